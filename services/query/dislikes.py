"""What a user engaged with negatively (a dislike, a rating below their mean), as
penalties on the candidates: plain functions over numbers, no I/O here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from services.common.vectorindex import StoredItem, VectorLike


def _unit_rows(vectors: Sequence[VectorLike]) -> npt.NDArray[np.float32]:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def closer_to_disliked(
    candidates: Sequence[StoredItem], liked: Sequence[StoredItem], disliked: Sequence[StoredItem]
) -> dict[str, tuple[str, float]]:
    """For each candidate more similar (cosine) to one of the ``disliked`` items than to
    any of the ``liked`` ones: the closest disliked item and by how much closer. Items
    without a vector are left out."""
    disliked = [d for d in disliked if d.vector]
    candidates = [c for c in candidates if c.vector]
    if not disliked or not candidates:
        return {}
    rows = _unit_rows([c.vector or () for c in candidates])
    to_each_disliked = rows @ _unit_rows([d.vector or () for d in disliked]).T
    closest = to_each_disliked.argmax(axis=1)
    margins = to_each_disliked.max(axis=1)
    liked = [i for i in liked if i.vector]
    if liked:
        margins = margins - (rows @ _unit_rows([i.vector or () for i in liked]).T).max(axis=1)
    return {
        item.item_id: (disliked[int(closest[row])].item_id, float(margins[row]))
        for row, item in enumerate(candidates)
        if margins[row] > 0
    }


def net_of_disliked(liked: Mapping[str, float], disliked: Mapping[str, float]) -> dict[str, float]:
    """Scores from the user's liked items minus the same scores from their disliked
    items, over the items either scores."""
    return {
        item: liked.get(item, 0.0) - disliked.get(item, 0.0)
        for item in dict.fromkeys([*liked, *disliked])
    }


__all__ = ["closer_to_disliked", "net_of_disliked"]
