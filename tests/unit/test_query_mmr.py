"""Maximal marginal relevance over blended results."""

from __future__ import annotations

import pytest

from services.query.ranking import Blended, blend, mmr

VECTORS = {
    "a": [1.0, 0.0],
    "a2": [0.99, 0.14],  # almost a
    "b": [0.0, 1.0],
    "c": [0.7, 0.7],
}


def ranked(*scores: tuple[str, float]) -> list[Blended]:
    return [Blended(item, score) for item, score in scores]


def ids(results: list[Blended]) -> list[str]:
    return [r.item_id for r in results]


LIST = ranked(("a", 1.0), ("a2", 0.95), ("c", 0.6), ("b", 0.5))


def test_no_diversity_keeps_the_blend_order() -> None:
    assert ids(mmr(LIST, VECTORS, limit=3, diversity=0.0)) == ["a", "a2", "c"]


def test_diversity_pushes_near_duplicates_down() -> None:
    # After a: a2 scores 0.7*0.95 - 0.3*0.99 = 0.368 and beats b (0.7*0.5 = 0.35); then b
    # (0.35 - 0.3*0.14 = 0.308) beats c (0.7*0.6 - 0.3*0.80 = 0.18).
    assert ids(mmr(LIST, VECTORS, limit=4, diversity=0.3)) == ["a", "a2", "b", "c"]
    # At 0.5, b (0.25) beats a2 (0.475 - 0.495 = -0.02) right after a.
    assert ids(mmr(LIST, VECTORS, limit=4, diversity=0.5)) == ["a", "b", "a2", "c"]


def test_full_diversity_ignores_relevance_after_the_first() -> None:
    # Only similarity counts after a: b (orthogonal) first, then c, then a2.
    assert ids(mmr(LIST, VECTORS, limit=4, diversity=1.0)) == ["a", "b", "c", "a2"]


def test_items_without_vectors_are_similar_to_nothing() -> None:
    results = mmr(ranked(("a", 1.0), ("a2", 0.9), ("x", 0.5)), {"a": [1, 0], "a2": [1, 0]},
                  limit=3, diversity=0.6)  # fmt: skip
    assert ids(results) == ["a", "x", "a2"]


def test_mmr_keeps_scores_and_reasons_and_respects_the_limit() -> None:
    blended = blend({"content": {"a": 1.0, "a2": 0.9, "b": 0.4}}, {"content": 1.0})
    results = mmr(blended, VECTORS, limit=2, diversity=0.8)
    assert ids(results) == ["a", "b"]
    assert results[1].score == 0.4
    assert results[1].reasons[0].signal == "content"
    assert mmr([], VECTORS, limit=3, diversity=0.5) == []


@pytest.mark.parametrize("diversity", [-0.1, 1.5])
def test_diversity_outside_0_1_is_refused(diversity: float) -> None:
    with pytest.raises(ValueError, match="diversity"):
        mmr(LIST, VECTORS, limit=2, diversity=diversity)


def test_blend_limit_explains_only_what_it_returns() -> None:
    signals = {"content": {"a": 0.9, "b": 0.5, "c": 0.1}, "tags": {"c": 1.0}}
    full = blend(signals, {"content": 1.0, "tags": 0.3})
    top = blend(signals, {"content": 1.0, "tags": 0.3}, limit=2)
    assert top == full[:2]
