"""Ranking, as plain functions over numbers: the user's content profile and the
weighted blend of signals with its explanation. No I/O here."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from schemas.query import Reason, Signal
from services.common.vectorindex import VectorLike

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class WeightedItem:
    item_id: str
    weight: float


def profile_weights(
    interactions: Sequence[tuple[str, float, datetime]], *, limit: int, half_life_days: float
) -> list[WeightedItem]:
    """The items that form a user's content profile: positive strength times recency
    (halving every ``half_life_days`` before the user's latest interaction)."""
    positive = [(item, strength, seen) for item, strength, seen in interactions if strength > 0]
    if not positive:
        return []
    latest = max(seen for _, _, seen in positive)
    weighted = [
        WeightedItem(
            item, strength * 2 ** (-(latest - seen).total_seconds() / 86_400 / half_life_days)
        )
        for item, strength, seen in positive
    ]
    weighted.sort(key=lambda w: (-w.weight, w.item_id))
    return weighted[:limit]


def profile_vector(
    vectors: Mapping[str, Sequence[float]], weights: Sequence[WeightedItem]
) -> Vector | None:
    """Weighted mean of the items' vectors, normalised; None when none is known."""
    rows = [
        (np.asarray(vectors[w.item_id], dtype=np.float32), w.weight)
        for w in weights
        if w.item_id in vectors
    ]
    if not rows:
        return None
    mean: Vector = np.sum([weight * vector for vector, weight in rows], axis=0, dtype=np.float32)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else None


def scaled(scores: Mapping[str, float], *, at_least: float = 0.0) -> dict[str, float]:
    """Scores divided by the best one (negatives to 0), so signals share a 0-1 scale.
    With ``at_least``, by the best one or ``at_least``, whichever is larger: scores
    below that much evidence stay below 1."""
    best = max(max((s for s in scores.values() if s > 0), default=0.0), at_least)
    return {item: max(score, 0.0) / best if best else 0.0 for item, score in scores.items()}


def signed_scaled(scores: Mapping[str, float]) -> dict[str, float]:
    """Positive scores divided by the best one, negative ones by the most negative one:
    -1..1, so that what a user dislikes pushes down as much as what they like lifts."""
    best = max((s for s in scores.values() if s > 0), default=0.0)
    worst = -min((s for s in scores.values() if s < 0), default=0.0)
    return {
        item: score / best if score > 0 else (score / worst if score < 0 else 0.0)
        for item, score in scores.items()
    }


@dataclass
class Blended:
    item_id: str
    score: float
    reasons: list[Reason] = field(default_factory=list)


def blend(
    signals: Mapping[Signal, Mapping[str, float]],
    weights: Mapping[Signal, float],
    details: Mapping[Signal, Mapping[str, str]] | None = None,
    *,
    limit: int | None = None,
    against: float = 1.0,
) -> list[Blended]:
    """Weighted sum of signals already on a 0-1 scale (-1..1 for a signal that can push
    an item down), best first, each result with the signals behind it (strongest first,
    the ones that pushed it down last). A negative score weighs ``against`` times its
    signal's weight. Ties break on item id, so results are stable. ``limit`` keeps the
    best ones only (and explains only those)."""
    details = details or {}
    active = [(s, w, scores) for s, scores in signals.items() if (w := weights.get(s, 0.0)) != 0]
    totals: dict[str, float] = {}
    for _, weight, scores in active:
        for item_id, score in scores.items():
            if score > 0:
                totals[item_id] = totals.get(item_id, 0.0) + weight * score
            elif score < 0:
                totals[item_id] = totals.get(item_id, 0.0) + against * weight * score
    if limit is not None and len(totals) > limit:
        # Rounding (for stable ties) moves a total by at most 5e-7, so no item more than
        # 1e-6 below the limit-th best total can reach the head: skip rounding those.
        floor = heapq.nlargest(limit, totals.values())[-1] - 1e-6
        totals = {item_id: total for item_id, total in totals.items() if total >= floor}
    rounded = {item_id: round(total, 6) for item_id, total in totals.items()}

    def best_first(item_id: str) -> tuple[float, str]:
        return (-rounded[item_id], item_id)

    order = (
        sorted(rounded, key=best_first)
        if limit is None
        else heapq.nsmallest(limit, rounded, key=best_first)
    )
    results = []
    for item_id in order:
        reasons = []
        for signal, weight, scores in active:
            score = scores.get(item_id, 0.0)
            if score != 0:
                effective = weight if score > 0 else against * weight
                reasons.append(
                    Reason(
                        signal=signal, score=round(score, 4), weight=effective,
                        contribution=round(effective * score, 4),
                        detail=details.get(signal, {}).get(item_id),
                    )
                )  # fmt: skip
        reasons.sort(key=lambda r: -r.contribution)
        results.append(Blended(item_id, rounded[item_id], reasons))
    return results


def mmr(
    ranked: Sequence[Blended],
    vectors: Mapping[str, VectorLike],
    *,
    limit: int,
    diversity: float,
) -> list[Blended]:
    """Maximal marginal relevance (Carbonell and Goldstein, 1998) over ``ranked`` (best
    first): pick, one at a time, the item with the best
    ``(1 - diversity) * relevance - diversity * similarity``, where relevance is the blended
    score divided by the best one and similarity is the highest cosine similarity to an
    item already picked. ``diversity`` 0 keeps the blend's order; 1 ignores relevance
    after the first pick. Items without a vector are similar to nothing. Ties keep the
    blend's order."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be within 0..1, got {diversity}")
    if diversity == 0.0 or len(ranked) <= 1:
        return list(ranked[:limit])
    best = max((b.score for b in ranked), default=0.0)
    relevance = np.array([b.score / best if best > 0 else 0.0 for b in ranked], dtype=np.float64)
    dimension = next((len(v) for v in vectors.values()), 0)
    matrix = np.zeros((len(ranked), dimension), dtype=np.float64)
    for row, entry in enumerate(ranked):
        vector = vectors.get(entry.item_id)
        if vector is not None and len(vector) == dimension:
            values = np.asarray(vector, dtype=np.float64)
            norm = float(np.linalg.norm(values))
            if norm > 0:
                matrix[row] = values / norm
    similarity = np.full(len(ranked), -np.inf)  # to the closest item picked so far
    available = np.ones(len(ranked), dtype=bool)
    picked: list[Blended] = []
    while len(picked) < min(limit, len(ranked)):
        penalty = np.where(np.isfinite(similarity), similarity, 0.0)
        value = (1.0 - diversity) * relevance - diversity * penalty
        value[~available] = -np.inf
        choice = int(np.argmax(value))  # the first of equals: the blend's order
        picked.append(ranked[choice])
        available[choice] = False
        similarity = np.maximum(similarity, matrix @ matrix[choice])
    return picked


__all__ = [
    "Blended",
    "WeightedItem",
    "blend",
    "mmr",
    "profile_vector",
    "profile_weights",
    "scaled",
    "signed_scaled",
]
