"""One user's candidate signals as a matrix, so that ranking them under some weights is
a few vector operations instead of a Python loop over hundreds of candidates.

:func:`preselect` finds the candidates that can make the head of the blend; the exact
blend (:func:`services.query.ranking.blend`, with its rounding, ties and explanations)
then runs over those few only, so the order and the reasons are the same as a blend
over every candidate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from schemas.query import Signal

Matrix = npt.NDArray[np.float64]

MARGIN = 1e-5
"""How far below the head's last total a candidate is still kept: the blend rounds its
totals to 6 decimals (moving each by at most 5e-7) and sums in another order (1e-15)."""


@dataclass(frozen=True)
class PackedSignals:
    """``scores[row, column]``: the score of ``item_ids[row]`` under ``signals[column]``
    (0 where the signal does not score it, as the blend treats an absent score)."""

    item_ids: list[str]
    signals: tuple[Signal, ...]
    scores: Matrix

    @classmethod
    def of(cls, signals: Mapping[Signal, Mapping[str, float]]) -> PackedSignals:
        names = tuple(signals)
        item_ids = list(dict.fromkeys(i for scores in signals.values() for i in scores))
        row = {item_id: n for n, item_id in enumerate(item_ids)}
        matrix = np.zeros((len(item_ids), len(names)), dtype=np.float64)
        for column, name in enumerate(names):
            scores = signals[name]
            if scores:
                rows = np.fromiter((row[i] for i in scores), dtype=np.intp, count=len(scores))
                matrix[rows, column] = np.fromiter(
                    scores.values(), dtype=np.float64, count=len(scores)
                )
        return cls(item_ids, names, matrix)

    def preselect(self, weights: Mapping[Signal, float], head: int, against: float) -> list[str]:
        """The candidates that can be among the ``head`` best of the blend under
        ``weights``: every candidate some weighted signal scores, when there are at most
        ``head``; else those whose total is within :data:`MARGIN` of the head-th best."""
        column_weights = np.array([weights.get(s, 0.0) for s in self.signals], dtype=np.float64)
        active = column_weights != 0
        if not active.any() or not self.item_ids:
            return []
        scores = self.scores[:, active]
        factor = column_weights[active]
        weighted = np.where(scores > 0, scores * factor, scores * (factor * against))
        totals = weighted.sum(axis=1)
        scored = np.flatnonzero((scores != 0).any(axis=1))
        if len(scored) > head:
            floor = np.partition(totals[scored], len(scored) - head)[len(scored) - head]
            scored = scored[totals[scored] >= floor - MARGIN]
        return [self.item_ids[row] for row in scored.tolist()]


__all__ = ["PackedSignals"]
