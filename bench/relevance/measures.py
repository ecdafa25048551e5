"""Ranking metrics (pure functions over one user's list) and bootstrap confidence
intervals over users. Lists are best first; ``relevant`` is what the user went on to
rate positively.

- HitRate@k: 1 when any of the first k is relevant.
- NDCG@k: DCG of the first k (gain 1 per relevant item, discount log2(rank + 1)) over
  the DCG of an ideal list (min(k, |relevant|) relevant items first).
- Recall@k: relevant items among the first k over min(k, |relevant|) (so a perfect
  list scores 1 even for a user with more than k relevant items).
- Reciprocal rank: 1 / rank of the first relevant item within the list, 0 if none.
- Catalog coverage: distinct items recommended to anyone over the catalog size.
- Novelty share: the share of recommended items the user had not rated before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


def hit_rate(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def ndcg(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal


def recall(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    if not relevant:
        return 0.0
    found = sum(1 for item in ranked[:k] if item in relevant)
    return found / min(k, len(relevant))


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    for rank, item in enumerate(ranked, start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def novelty_share(ranked: Sequence[str], seen: Collection[str]) -> float:
    """Share of the list the user had not rated before (1.0 for an empty list)."""
    if not ranked:
        return 1.0
    return sum(1 for item in ranked if item not in seen) / len(ranked)


def catalog_coverage(lists: Iterable[Sequence[str]], catalog_size: int) -> float:
    if catalog_size <= 0:
        return 0.0
    return len({item for ranked in lists for item in ranked}) / catalog_size


PER_USER = ("hit_rate@10", "ndcg@10", "recall@20", "mrr@20", "novelty@10")
"""Metrics that are a mean over users, in report order."""


def user_metrics(
    ranked: Sequence[str], relevant: Collection[str], seen: Collection[str]
) -> dict[str, float]:
    """One user's per-user metrics (the list is cut at 20)."""
    ranked = list(ranked[:20])
    return {
        "hit_rate@10": hit_rate(ranked, relevant, 10),
        "ndcg@10": ndcg(ranked, relevant, 10),
        "recall@20": recall(ranked, relevant, 20),
        "mrr@20": reciprocal_rank(ranked, relevant),
        "novelty@10": novelty_share(ranked[:10], seen),
    }


class Resampling(Protocol):
    """The bootstrap settings of the run (``EvaluationConfig``)."""

    resamples: int
    confidence: float
    seed: int


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap percentile interval."""

    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


def bootstrap_indices(count: int, *, resamples: int, seed: int) -> npt.NDArray[np.intp]:
    """``resamples`` rows of ``count`` indices drawn with replacement (seeded), shared
    by every method so that their intervals come from the same resampled users."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, count, size=(resamples, count))


def bootstrap_mean(
    values: Sequence[float] | Floats, indices: npt.NDArray[np.intp], *, confidence: float = 0.95
) -> Estimate:
    """The mean of ``values`` and its percentile bootstrap interval."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return Estimate(math.nan, math.nan, math.nan)
    means = array[indices].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(float(array.mean()), float(low), float(high))


def bootstrap_statistic(
    statistic: Callable[[npt.NDArray[np.intp]], float],
    count: int,
    indices: npt.NDArray[np.intp],
    *,
    confidence: float = 0.95,
) -> Estimate:
    """Any statistic of a set of users (e.g. catalog coverage), with its interval:
    ``statistic(rows)`` gets the user indices of one sample."""
    point = statistic(np.arange(count))
    samples = np.array([statistic(row) for row in indices], dtype=np.float64)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Estimate(float(point), float(low), float(high))


def summarise(
    per_user: Sequence[Mapping[str, float]],
    lists: Sequence[Sequence[str]],
    catalog_size: int,
    indices: npt.NDArray[np.intp],
    *,
    confidence: float = 0.95,
) -> dict[str, Estimate]:
    """Every metric of one method over the same users, with intervals."""
    summary = {
        name: bootstrap_mean([m[name] for m in per_user], indices, confidence=confidence)
        for name in PER_USER
    }
    top10 = [list(ranked[:10]) for ranked in lists]
    summary["coverage@10"] = bootstrap_statistic(
        lambda rows: catalog_coverage((top10[i] for i in rows), catalog_size),
        len(top10),
        indices,
        confidence=confidence,
    )
    return summary


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    indices: npt.NDArray[np.intp],
    *,
    confidence: float = 0.95,
) -> Estimate:
    """Mean of a - b over the same users, with its bootstrap interval (paired)."""
    return bootstrap_mean(
        np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64),
        indices,
        confidence=confidence,
    )


__all__ = [
    "PER_USER",
    "Estimate",
    "Resampling",
    "bootstrap_indices",
    "bootstrap_mean",
    "bootstrap_statistic",
    "catalog_coverage",
    "hit_rate",
    "ndcg",
    "novelty_share",
    "paired_difference",
    "recall",
    "reciprocal_rank",
    "summarise",
    "user_metrics",
]
