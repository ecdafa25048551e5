"""Which catalogue the vector index holds: the content partitions' watermarks (the
offsets the embedders have applied, kept in the index), read at most every ``every_s``
in the background. Kept candidates gathered from another catalogue are gathered again
(see services/query/cache.py), so new, changed and deleted items reach
recommendations within about that long of being embedded."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable

from schemas.topics import CONTENT
from services.common.vectorindex import VectorIndex
from services.common.vectorindex.watermarks import IndexWatermarks

log = logging.getLogger(__name__)


class CatalogueClock:
    def __init__(
        self, index: VectorIndex, *, every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.watermarks = IndexWatermarks(index, CONTENT.name)
        self.every_s = every_s
        self.clock = clock
        self._known: Hashable | None = None
        self._read_at = float("-inf")
        self._reading: asyncio.Task[None] | None = None

    async def version(self) -> Hashable:
        """The catalogue last read (read now only the first time)."""
        if self._known is None:
            await self._read()
        elif self.clock() - self._read_at > self.every_s and self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(self._done)
        return self._known

    async def _read(self) -> None:
        began = self.clock()
        marks = await self.watermarks.load_watermarks()
        self._known = tuple(sorted((p, m.epoch, m.offset) for p, m in marks.items()))
        self._read_at = began

    def _done(self, task: asyncio.Task[None]) -> None:
        self._reading = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("reading the catalogue's watermarks failed: %r", task.exception())
            self._read_at = self.clock()  # try again in every_s, keep the last known

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()


__all__ = ["CatalogueClock"]
