"""An in-process memo of items (payloads, and vectors once asked for) for an index
this process alone writes.

Converting a stored payload to Python costs ~5 us a point, a vector ~10 us; a
recommendation reads the payloads of hundreds of candidates (their tags) and rates them
against the user's profile, almost all the same items from one request to the next.
The memo is kept coherent by its owner: every write invalidates the points it touches,
before and after it is applied, and a read may fill the memo only when no write started
or ended while it read (an ``epoch`` taken before the read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.common.vectorindex.base import StoredItem

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Cached:
    item: StoredItem  # without its vector
    vector: Vector | None = None  # as stored (unit length for cosine), when it was read
    row: int = -1  # its row in :attr:`ItemCache.matrix`, when memoized
    generation: int = -1  # which matrix the row is of (see :attr:`ItemCache.generation`)


class ItemCache:
    """Live items by point id (``UUID.int``: an int hashes in C), their vectors rows of
    one matrix (rating candidates is then one gather and one product). Bounded: past
    ``capacity`` entries or rows it starts again empty (a cold memo only costs reads),
    with a new matrix: a row is never written twice, so an entry handed out earlier
    (even within the same request) keeps its vector. Rows of forgotten entries are not
    reused; they are given back when the memo starts again."""

    def __init__(self, dimension: int, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self.dimension = dimension
        self.matrix: Vector = np.zeros((0, dimension), dtype=np.float32)
        self.generation = 0  # bumped whenever :attr:`matrix` is replaced
        self._rows_used = 0
        self._entries: dict[int, Cached] = {}
        self._epoch = 0
        self._writing = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def epoch(self) -> int:
        """Take it before a read; pass it to :meth:`fill` with what the read found."""
        return self._epoch

    def get(self, point: int) -> Cached | None:
        return self._entries.get(point)

    def fill(self, found: Mapping[int, Cached], epoch: int) -> dict[int, Cached]:
        """Remember what a read found, unless a write overlapped the read; returns the
        entries as remembered (vectors moved into :attr:`matrix`)."""
        if epoch != self._epoch or self._writing or not found:
            return dict(found)
        vectors = sum(1 for entry in found.values() if entry.vector is not None)
        if len(self._entries) + len(found) > self.capacity or not self._room(vectors):
            self.clear()
            if not self._room(vectors):
                return dict(found)
        kept: dict[int, Cached] = {}
        for point, entry in found.items():
            if entry.vector is not None:
                row = self._rows_used
                self.matrix[row] = entry.vector
                self._rows_used += 1
                entry = Cached(entry.item, self.matrix[row], row, self.generation)
            kept[point] = entry
        self._entries.update(kept)
        return kept

    def _room(self, vectors: int) -> bool:
        """Make room for ``vectors`` more rows (False past ``capacity`` rows)."""
        needed = self._rows_used + vectors
        if needed <= len(self.matrix):
            return True
        if needed > self.capacity:
            return False
        size = min(self.capacity, max(needed, 2 * len(self.matrix), 1_024))
        grown = np.zeros((size, self.dimension), dtype=np.float32)
        grown[: self._rows_used] = self.matrix[: self._rows_used]
        self.matrix = grown  # rows keep their numbers: the generation stays
        return True

    def gather(self, entries: Iterable[Cached]) -> Vector | None:
        """The entries' vectors as one matrix, gathered in one step when all are rows of
        the current matrix; None when one has no vector."""
        entries = list(entries)
        if any(entry.vector is None for entry in entries):
            return None
        if all(entry.generation == self.generation and entry.row >= 0 for entry in entries):
            return self.matrix[[entry.row for entry in entries]]
        return np.stack([entry.vector for entry in entries if entry.vector is not None])

    def begin_write(self, points: Iterable[int]) -> None:
        self._writing += 1
        self._forget(points)

    def end_write(self, points: Iterable[int]) -> None:
        self._writing -= 1
        self._forget(points)

    def _forget(self, points: Iterable[int]) -> None:
        self._epoch += 1
        for point in points:
            self._entries.pop(point, None)

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self.matrix = np.zeros((0, self.dimension), dtype=np.float32)
        self.generation += 1
        self._rows_used = 0


__all__ = ["Cached", "ItemCache", "Vector"]
