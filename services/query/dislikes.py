"""What a user engaged with negatively (a dislike, a rating below their mean), as
penalties on the candidates: plain functions over numbers, no I/O here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]


def closer_to_disliked(
    item_ids: Sequence[str], to_disliked: Matrix, to_liked: Matrix, disliked: Sequence[str]
) -> dict[str, tuple[str, float]]:
    """For each of ``item_ids`` more similar (cosine) to one of the ``disliked`` items than
    to any liked one: the closest disliked item and by how much closer. ``to_disliked``
    and ``to_liked`` hold each item's similarity (a row) to each disliked and each liked
    item (a column; no column: nothing liked)."""
    if not disliked or not len(item_ids):
        return {}
    closest = to_disliked.argmax(axis=1)
    margins = to_disliked.max(axis=1)
    if to_liked.shape[1]:
        margins = margins - to_liked.max(axis=1)
    return {
        item_id: (disliked[int(closest[row])], float(margins[row]))
        for row, item_id in enumerate(item_ids)
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
