"""Each user's gathered candidates, kept between requests.

Gathering reads the user model, the co-occurrence lists and the vector index and costs
milliseconds; ranking what was gathered costs microseconds. An entry is used only while
the user's folded model is the one it was gathered from (the user's version, read on
every request: one Redis command), so a user's own events show in the very next
request. What the catalogue changes (its ``generation``) and what other users change
(co-occurrence, trending) reach an entry when it is gathered again: an entry of an
older generation, or older than ``ttl_s``, is still served once while a fresh one is
gathered in the background. Concurrent requests for one entry share one gathering.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    version: Hashable
    generation: Hashable
    gathered_at: float  # time.monotonic()
    value: T


class VersionedCache(Generic[T]):
    """Least recently used entries by key, each valid for one version of its source."""

    def __init__(
        self, capacity: int, ttl_s: float, *, keep: Callable[[T], bool] = lambda _: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        """``keep`` says whether a gathered value is worth keeping (else every request
        for it gathers)."""
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.keep = keep
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._pending: dict[tuple[Hashable, Hashable], asyncio.Future[T]] = {}
        self._refreshing: set[asyncio.Task[T]] = set()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(
        self, key: Hashable, version: Hashable, gather: Callable[[], Awaitable[T]],
        generation: Hashable = None,
    ) -> T:  # fmt: skip
        """The entry of ``key`` gathered at ``version``, gathering it when there is none."""
        if self.capacity <= 0:
            return await gather()
        entry = self._entries.get(key)
        if entry is not None and entry.version == version:
            self._entries.move_to_end(key)
            self.hits += 1
            old = self.clock() - entry.gathered_at > self.ttl_s
            if old or entry.generation != generation:
                self._refresh(key, version, gather, generation)
            return entry.value
        self.misses += 1
        return await self._gathered(key, version, gather, generation)

    async def settled(self) -> None:
        """Wait for the background gatherings under way."""
        while self._refreshing:
            await asyncio.gather(*self._refreshing, return_exceptions=True)

    async def close(self) -> None:
        """Stop the background gatherings under way."""
        for task in list(self._refreshing):
            task.cancel()
        await self.settled()

    def _refresh(
        self, key: Hashable, version: Hashable, gather: Callable[[], Awaitable[T]],
        generation: Hashable,
    ) -> None:  # fmt: skip
        if (key, version) in self._pending:
            return
        task = asyncio.ensure_future(self._gathered(key, version, gather, generation))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[T]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("refreshing cached candidates failed: %r", task.exception())

    async def _gathered(
        self, key: Hashable, version: Hashable, gather: Callable[[], Awaitable[T]],
        generation: Hashable,
    ) -> T:  # fmt: skip
        pending = self._pending.get((key, version))
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending[(key, version)] = future
        try:
            value = await gather()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # marked retrieved: the waiters get it, or nobody
            raise
        finally:
            del self._pending[(key, version)]
        future.set_result(value)
        if self.keep(value):
            self._entries[key] = _Entry(version, generation, self.clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        else:
            self._entries.pop(key, None)
        return value


__all__ = ["VersionedCache"]
