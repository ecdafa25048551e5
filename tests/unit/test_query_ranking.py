from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas.query import Signal
from services.query.ranking import (
    WeightedItem,
    blend,
    profile_vector,
    profile_weights,
    scaled,
)

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def test_profile_weights_favour_strong_and_recent_positive_items() -> None:
    weights = profile_weights(
        [
            ("old-strong", 4.0, NOW - timedelta(days=30)),
            ("new-weak", 1.0, NOW),
            ("new-strong", 4.0, NOW),
            ("disliked", -3.0, NOW),
        ],
        limit=10,
        half_life_days=30,
    )
    assert [w.item_id for w in weights] == ["new-strong", "old-strong", "new-weak"]
    assert weights[1].weight == pytest.approx(2.0)  # halved after one half-life


def test_profile_weights_are_relative_to_the_users_latest_event() -> None:
    long_ago = NOW - timedelta(days=3650)
    weights = profile_weights([("a", 2.0, long_ago)], limit=5, half_life_days=7)
    assert weights == [WeightedItem("a", 2.0)]


def test_profile_weights_are_limited() -> None:
    weights = profile_weights(
        [(f"i{n}", float(n + 1), NOW) for n in range(10)], limit=3, half_life_days=1
    )
    assert [w.item_id for w in weights] == ["i9", "i8", "i7"]


def test_profile_vector_is_the_normalised_weighted_mean() -> None:
    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    profile = profile_vector(
        vectors, [WeightedItem("a", 3.0), WeightedItem("b", 1.0), WeightedItem("x", 9.0)]
    )
    assert profile is not None
    assert np.linalg.norm(profile) == pytest.approx(1.0)
    assert profile[0] == pytest.approx(3 / 10**0.5)
    assert profile_vector(vectors, [WeightedItem("x", 1.0)]) is None


def test_scaled_divides_by_the_best_and_clips_negatives() -> None:
    assert scaled({"a": 4.0, "b": 1.0, "c": -2.0}) == {"a": 1.0, "b": 0.25, "c": 0.0}
    assert scaled({}) == {}


def test_blend_sums_weighted_signals_and_explains_them() -> None:
    results = blend(
        {"content": {"a": 0.5, "b": 0.9}, "cooccurrence": {"a": 1.0}, "trending": {"c": 1.0}},
        {"content": 1.0, "cooccurrence": 0.7, "trending": 0.3},
        {"cooccurrence": {"a": "with X"}},
    )
    assert [(r.item_id, r.score) for r in results] == [("a", 1.2), ("b", 0.9), ("c", 0.3)]
    a = results[0]
    assert [(r.signal, r.contribution) for r in a.reasons] == [
        ("cooccurrence", 0.7),
        ("content", 0.5),
    ]
    assert a.reasons[0].detail == "with X"


def test_blend_ignores_zero_weights_and_scores_and_breaks_ties_by_id() -> None:
    results = blend(
        {"content": {"b": 0.5, "a": 0.5, "z": 0.0}, "tags": {"a": 1.0}},
        {"content": 1.0, "tags": 0.0},
    )
    assert [r.item_id for r in results] == ["a", "b"]
    assert all(len(r.reasons) == 1 for r in results)


def test_a_limited_blend_is_the_head_of_the_full_one() -> None:
    rng = np.random.default_rng(7)
    steps: dict[Signal, int] = {"content": 1, "cooccurrence": 3, "popular": 2}
    signals = {
        signal: {f"i{n}": float(rng.choice([0.0, 0.5, rng.random()])) for n in range(0, 300, step)}
        for signal, step in steps.items()
    }
    weights: dict[Signal, float] = {"content": 0.5, "cooccurrence": 1.0, "popular": 0.25}
    full = blend(signals, weights, {"cooccurrence": {"i3": "with X"}})
    head = blend(signals, weights, {"cooccurrence": {"i3": "with X"}}, limit=20)
    assert len(head) == 20
    assert [(r.item_id, r.score, r.reasons) for r in head] == [
        (r.item_id, r.score, r.reasons) for r in full[:20]
    ]


def test_a_limited_blend_ties_on_rounded_totals_as_the_full_one_does() -> None:
    signals: dict[Signal, dict[str, float]] = {"content": {"c": 0.5, "b": 0.4999996, "a": 0.4999}}
    weights: dict[Signal, float] = {"content": 1.0}
    assert [r.item_id for r in blend(signals, weights, limit=1)] == ["b"]
    assert [r.item_id for r in blend(signals, weights, limit=2)] == ["b", "c"]
