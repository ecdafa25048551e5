"""Ranking, as plain functions over numbers: the user's content profile and the
weighted blend of signals with its explanation. No I/O here."""

from __future__ import annotations

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


def cosine(a: VectorLike, b: VectorLike) -> float:
    a, other = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    denominator = float(np.linalg.norm(a) * np.linalg.norm(other))
    return float(a @ other) / denominator if denominator else 0.0


def scaled(scores: Mapping[str, float]) -> dict[str, float]:
    """Scores divided by the best one (negatives to 0), so signals share a 0-1 scale."""
    best = max((s for s in scores.values() if s > 0), default=0.0)
    return {item: max(score, 0.0) / best if best else 0.0 for item, score in scores.items()}


@dataclass
class Blended:
    item_id: str
    score: float
    reasons: list[Reason] = field(default_factory=list)


def blend(
    signals: Mapping[Signal, Mapping[str, float]],
    weights: Mapping[Signal, float],
    details: Mapping[Signal, Mapping[str, str]] | None = None,
) -> list[Blended]:
    """Weighted sum of signals already on a 0-1 scale, best first, each result with the
    signals behind it (strongest first). Ties break on item id, so results are stable."""
    details = details or {}
    results: dict[str, Blended] = {}
    for signal, scores in signals.items():
        weight = weights.get(signal, 0.0)
        if weight == 0:
            continue
        for item_id, score in scores.items():
            if score <= 0:
                continue
            entry = results.setdefault(item_id, Blended(item_id, 0.0))
            contribution = weight * score
            entry.score += contribution
            entry.reasons.append(
                Reason(
                    signal=signal, score=round(score, 4), weight=weight,
                    contribution=round(contribution, 4),
                    detail=details.get(signal, {}).get(item_id),
                )
            )  # fmt: skip
    for entry in results.values():
        entry.reasons.sort(key=lambda r: -r.contribution)
        entry.score = round(entry.score, 6)
    return sorted(results.values(), key=lambda b: (-b.score, b.item_id))


__all__ = [
    "Blended",
    "WeightedItem",
    "blend",
    "cosine",
    "profile_vector",
    "profile_weights",
    "scaled",
]
