"""The evaluation's pure parts: the weight grid, the offline baselines, the summaries
and the verdict (the real-system run is in tests/integration/test_eval_movielens.py)."""

from __future__ import annotations

from typing import Any

from bench.relevance.methods import (
    baselines,
    count_popular_lists,
    only,
    random_lists,
    score,
    without,
)
from bench.relevance.phases import Phase, Row
from bench.relevance.runner import EvaluationConfig
from bench.relevance.selection import weight_grid
from bench.relevance.summary import paired, phase_summary, verdict
from services.app.datasets import Rating
from services.query.config import RECOMMEND_SIGNALS


def test_the_grid_has_one_weighting_per_distinct_ranking() -> None:
    grid = weight_grid((0.0, 0.5, 1.0))
    assert len(grid) == 3**5 - 2**5  # every combination whose largest weight is 1
    assert all(max(w.values()) == 1.0 for w in grid)
    assert {"content": 1.0, "cooccurrence": 0.0, "trending": 0.0, "popular": 0.0,
            "tags": 0.0} in grid  # fmt: skip
    assert len(weight_grid((0.0, 1.0))) == 31
    assert only("trending") == {s: float(s == "trending") for s in RECOMMEND_SIGNALS}
    assert without({"content": 1.0, "tags": 0.5}, "tags") == {"content": 1.0, "tags": 0.0}


def test_every_baseline_the_issue_names_is_there() -> None:
    keys = [m.key for m in baselines()]
    assert keys == ["popular", "popular_count", "trending", "cooccurrence", "content", "random"]


def row(user: str, cutoff: int, history: set[str], targets: set[str], period: str = "p") -> Row:
    return Row(user, period, cutoff, frozenset(history), frozenset(targets))


RATINGS = [
    Rating("1", "a", 5.0, 1), Rating("2", "a", 4.0, 2), Rating("3", "b", 4.5, 3),
    Rating("1", "c", 2.0, 4), Rating("2", "c", 3.0, 5), Rating("3", "d", 4.0, 20),
]  # fmt: skip


def test_most_popular_counts_positive_ratings_before_each_cut_off() -> None:
    phase = Phase("t", rows=[row("9", 10, set(), {"x"}), row("1", 10, {"a"}, {"x"}),
                             row("9", 30, set(), {"x"})])  # fmt: skip
    lists = count_popular_lists(phase, RATINGS)
    assert lists[0] == ["a", "b"]  # c: no rating >= 4; d: after the cut-off
    assert lists[1] == ["b"]  # a was rated by the user
    assert lists[2] == ["a", "b", "d"]  # ties by id


def test_random_lists_are_seeded_unseen_and_distinct() -> None:
    catalog = [str(n) for n in range(100)]
    phase = Phase("t", rows=[row("1", 0, {"0", "1", "2"}, {"5"}), row("2", 0, set(), {"5"})])
    first = random_lists(phase, catalog, seed=7)
    assert first == random_lists(phase, catalog, seed=7)
    assert first != random_lists(phase, catalog, seed=8)
    assert all(len(ranked) == 20 == len(set(ranked)) for ranked in first)
    assert not {"0", "1", "2"} & set(first[0])


def scored_phase() -> Phase:
    """Four users; the blend finds the target of three, popularity of one."""
    phase = Phase("test")
    for n in range(4):
        phase.rows.append(row(str(n), 10, {"h"} if n < 2 else set(), {f"t{n}"}))
    score(phase, "blend", [[f"t{n}" if n < 3 else "x"] for n in range(4)])
    score(phase, "popular", [["t0"], ["x"], ["x"], ["x"]])
    score(phase, "random", [["y"], ["y"], ["y"], ["y"]])
    return phase


def test_summaries_split_users_by_history_and_the_verdict_reads_them() -> None:
    config = EvaluationConfig(folder=None, resamples=200, seed=1)  # type: ignore[arg-type]
    phase = scored_phase()
    summary = phase_summary(phase, catalog_size=10, config=config)
    assert (summary["users"], summary["users_with_history"], summary["targets"]) == (4, 2, 4)
    assert summary["all"]["methods"]["blend"]["hit_rate@10"]["mean"] == 0.75
    assert summary["with_history"]["methods"]["popular"]["hit_rate@10"]["mean"] == 0.5
    assert summary["without_history"]["users"] == 2
    result: dict[str, Any] = verdict(summary, ["popular", "random"])
    assert result["hit_rate@10"]["best_baseline"] == "popular"
    assert result["hit_rate@10"]["beats_every_baseline"]
    assert result["hit_rate@10"]["best_baseline_high"] >= 0.25
    differences = paired(phase, ["popular"], config)
    assert differences["popular"]["hit_rate@10"]["mean"] == 0.5


def test_several_periods_are_summarised_each() -> None:
    config = EvaluationConfig(folder=None, resamples=50)  # type: ignore[arg-type]
    phase = Phase("validation", rows=[row("1", 1, set(), {"a"}, "window 1"),
                                      row("1", 2, {"a"}, {"b"}, "window 2")])  # fmt: skip
    score(phase, "blend", [["a"], ["x"]])
    summary = phase_summary(phase, catalog_size=5, config=config)
    assert list(summary["periods"]) == ["window 1", "window 2"]
    assert summary["periods"]["window 1"]["methods"]["blend"]["ndcg@10"]["mean"] == 1.0
    assert summary["periods"]["window 2"]["users_with_history"] == 1
