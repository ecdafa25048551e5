"""Ranking metrics on hand-computed cases, and the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.relevance.measures import (
    bootstrap_indices,
    bootstrap_mean,
    bootstrap_statistic,
    catalog_coverage,
    hit_rate,
    ndcg,
    novelty_share,
    paired_difference,
    recall,
    reciprocal_rank,
    summarise,
    user_metrics,
)

RANKED = ["a", "b", "c", "d", "e"]


def test_hit_rate() -> None:
    assert hit_rate(RANKED, {"c"}, 3) == 1.0
    assert hit_rate(RANKED, {"d"}, 3) == 0.0
    assert hit_rate([], {"a"}, 10) == 0.0


def test_ndcg_by_hand() -> None:
    # Relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3).
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg(RANKED, {"b", "d"}, 10) == pytest.approx(expected)
    assert ndcg(RANKED, {"a"}, 10) == 1.0
    assert ndcg(RANKED, {"a", "b", "x", "y"}, 2) == 1.0  # the ideal is cut at k too
    assert ndcg(RANKED, {"e"}, 4) == 0.0
    assert ndcg(RANKED, set(), 10) == 0.0


def test_recall_is_over_what_k_items_could_hold() -> None:
    assert recall(RANKED, {"a", "x"}, 5) == 0.5
    assert recall(RANKED, {"a", "b", "x", "y", "z"}, 2) == 1.0  # min(k, |relevant|) = 2
    assert recall(RANKED, set(), 5) == 0.0


def test_reciprocal_rank() -> None:
    assert reciprocal_rank(RANKED, {"c", "e"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(RANKED, {"x"}) == 0.0


def test_novelty_and_coverage() -> None:
    assert novelty_share(RANKED, {"a", "b"}) == 0.6
    assert novelty_share([], {"a"}) == 1.0
    assert catalog_coverage([["a", "b"], ["b", "c"]], 10) == 0.3
    assert catalog_coverage([], 0) == 0.0


def test_user_metrics_cut_the_list_at_20() -> None:
    ranked = [f"i{n}" for n in range(30)]
    metrics = user_metrics(ranked, {"i25"}, seen={"i0"})
    assert metrics == {
        "hit_rate@10": 0.0, "ndcg@10": 0.0, "recall@20": 0.0, "mrr@20": 0.0,
        "novelty@10": 0.9,
    }  # fmt: skip
    assert user_metrics(ranked, {"i12"}, seen=set())["mrr@20"] == pytest.approx(1 / 13)


def test_the_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = np.array([0.0] * 50 + [1.0] * 50)
    indices = bootstrap_indices(len(values), resamples=2000, seed=1)
    assert np.array_equal(indices, bootstrap_indices(len(values), resamples=2000, seed=1))
    estimate = bootstrap_mean(values, indices)
    assert estimate.mean == 0.5
    # The standard error of a proportion 0.5 over 100 users is 0.05: about +-0.1.
    assert estimate.low == pytest.approx(0.4, abs=0.02)
    assert estimate.high == pytest.approx(0.6, abs=0.02)
    constant = bootstrap_mean([0.3] * 10, bootstrap_indices(10, resamples=100, seed=0))
    assert (constant.low, constant.high) == pytest.approx((0.3, 0.3))
    assert math.isnan(bootstrap_mean([], indices).mean)


def test_a_statistic_of_the_user_set_is_bootstrapped_too() -> None:
    lists = [["a"], ["b"], ["c"], ["d"]]
    indices = bootstrap_indices(4, resamples=500, seed=3)
    estimate = bootstrap_statistic(
        lambda rows: catalog_coverage((lists[i] for i in rows), 4), 4, indices
    )
    assert estimate.mean == 1.0
    assert estimate.high <= 1.0
    assert estimate.low < 1.0  # resampled sets of users repeat some and miss others


def test_paired_differences_use_the_same_users() -> None:
    a = [1.0, 0.0, 1.0, 1.0]
    b = [0.0, 0.0, 1.0, 0.0]
    diff = paired_difference(a, b, bootstrap_indices(4, resamples=1000, seed=0))
    assert diff.mean == 0.5
    assert diff.low >= 0.0


def test_summaries_hold_every_metric() -> None:
    per_user = [user_metrics(["a", "b"], {"a"}, set()), user_metrics(["c"], {"x"}, {"c"})]
    summary = summarise(per_user, [["a", "b"], ["c"]], 10, bootstrap_indices(2, resamples=50,
                                                                            seed=0))  # fmt: skip
    assert set(summary) == {
        "hit_rate@10", "ndcg@10", "recall@20", "mrr@20", "novelty@10", "coverage@10",
    }  # fmt: skip
    assert summary["hit_rate@10"].mean == 0.5
    assert summary["novelty@10"].mean == 0.5
    assert summary["coverage@10"].mean == 0.3
