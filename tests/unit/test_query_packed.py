"""Ranking from the packed signals gives what the blend over every candidate gives:
the same items, order, totals and reasons, whatever the weights."""

from __future__ import annotations

import random

import pytest

from schemas.query import Signal
from services.query.packed import PackedSignals
from services.query.ranking import blend

SIGNALS: tuple[Signal, ...] = ("content", "cooccurrence", "trending", "popular", "tags")


def random_signals(rng: random.Random, items: int) -> dict[Signal, dict[str, float]]:
    signals: dict[Signal, dict[str, float]] = {}
    for signal in SIGNALS:
        chosen = rng.sample(range(items), rng.randint(0, items))
        signed = signal in ("cooccurrence", "content", "tags")
        signals[signal] = {
            f"item-{n}": round(rng.uniform(-1.0 if signed else 0.0, 1.0), rng.choice([2, 6]))
            for n in chosen
        }
    return signals


@pytest.mark.parametrize("seed", range(200))
def test_the_preselected_head_blends_like_every_candidate(seed: int) -> None:
    rng = random.Random(seed)
    signals = random_signals(rng, rng.choice([0, 1, 5, 40, 300]))
    weights = {s: rng.choice([0.0, 0.25, 0.5, 1.0, 3.0]) for s in SIGNALS}
    head, against = rng.choice([1, 10, 50]), rng.choice([0.0, 1.0, 2.0])
    chosen = set(PackedSignals.of(signals).preselect(weights, head, against))
    subset = {s: {i: v for i, v in scores.items() if i in chosen} for s, scores in signals.items()}

    assert blend(subset, weights, limit=head, against=against) == blend(
        signals, weights, limit=head, against=against
    )


def test_ties_at_the_head_are_all_kept() -> None:
    signals: dict[Signal, dict[str, float]] = {"content": {f"i{n}": 0.5 for n in range(30)}}

    chosen = PackedSignals.of(signals).preselect({"content": 1.0}, 10, 1.0)

    assert sorted(chosen) == sorted(signals["content"])


def test_only_weighted_signals_bring_candidates() -> None:
    signals: dict[Signal, dict[str, float]] = {"content": {"a": 0.9}, "trending": {"b": 1.0}}

    packed = PackedSignals.of(signals)

    assert packed.preselect({"content": 1.0, "trending": 0.0}, 10, 1.0) == ["a"]
    assert packed.preselect({"content": 0.0}, 10, 1.0) == []
