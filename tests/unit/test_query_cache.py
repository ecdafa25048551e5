"""The query process's cache of gathered candidates: an entry serves only the version
it was gathered at, concurrent misses share one gathering, old entries are refreshed
in the background, the least recently used go first."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from services.query.cache import VersionedCache
from services.query.catalogue import CatalogueClock


class Source:
    """Counts gatherings; each returns the version and the count so far."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def gather(self, version: int) -> tuple[int, int]:
        self.calls += 1
        calls = self.calls
        await self.release.wait()
        return version, calls


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_entry_serves_its_version_only() -> None:
    cache: VersionedCache[tuple[int, int]] = VersionedCache(10, ttl_s=60)
    source = Source()

    first = await cache.get("ann", 1, lambda: source.gather(1))
    again = await cache.get("ann", 1, lambda: source.gather(1))
    newer = await cache.get("ann", 2, lambda: source.gather(2))

    assert (first, again, newer) == ((1, 1), (1, 1), (2, 2))
    assert (cache.hits, cache.misses) == (1, 2)


async def test_concurrent_misses_share_one_gathering() -> None:
    cache: VersionedCache[tuple[int, int]] = VersionedCache(10, ttl_s=60)
    source = Source()
    source.release.clear()

    waiting = [asyncio.ensure_future(cache.get("ann", 1, lambda: source.gather(1))) for _ in "abc"]
    await asyncio.sleep(0)  # every request is waiting on the one gathering
    source.release.set()

    assert await asyncio.gather(*waiting) == [(1, 1)] * 3
    assert source.calls == 1


async def test_a_failed_gathering_reaches_every_waiter_and_is_not_kept() -> None:
    cache: VersionedCache[int] = VersionedCache(10, ttl_s=60)
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise RuntimeError("index down")

    waiting = [asyncio.ensure_future(cache.get("ann", 1, failing)) for _ in "ab"]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)

    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert len(cache) == 0


async def test_an_old_entry_is_served_once_more_while_gathered_again() -> None:
    clock = Clock()
    cache: VersionedCache[tuple[int, int]] = VersionedCache(10, ttl_s=30, clock=clock)
    source = Source()
    await cache.get("ann", 1, lambda: source.gather(1))
    clock.now = 31.0
    source.release.clear()

    stale = await cache.get("ann", 1, lambda: source.gather(1))
    assert stale == (1, 1)
    source.release.set()
    await cache.settled()
    assert source.calls == 2

    assert await cache.get("ann", 1, lambda: source.gather(1)) == (1, 2)
    assert source.calls == 2


async def test_the_least_recently_used_entry_goes_first() -> None:
    cache: VersionedCache[tuple[int, int]] = VersionedCache(2, ttl_s=60)
    source = Source()
    for user in ("ann", "bob", "ann", "cid"):
        await cache.get(user, 1, lambda: source.gather(1))

    assert source.calls == 3  # ann was used again, so bob went
    await cache.get("ann", 1, lambda: source.gather(1))
    assert source.calls == 3
    await cache.get("bob", 1, lambda: source.gather(1))
    assert source.calls == 4


@pytest.mark.parametrize("capacity", [0])
async def test_capacity_zero_gathers_every_time(capacity: int) -> None:
    cache: VersionedCache[tuple[int, int]] = VersionedCache(capacity, ttl_s=60)
    source = Source()
    await cache.get("ann", 1, lambda: source.gather(1))
    await cache.get("ann", 1, lambda: source.gather(1))

    assert source.calls == 2
    assert len(cache) == 0


async def test_a_value_not_worth_keeping_is_gathered_every_time() -> None:
    cache: VersionedCache[tuple[int, int]] = VersionedCache(
        10, ttl_s=60, keep=lambda value: value[0] > 1
    )
    source = Source()
    for version in (1, 1, 2, 2):
        await cache.get("ann", version, partial(source.gather, version))

    assert source.calls == 3  # version 1 twice, version 2 once


async def test_an_entry_of_an_older_generation_is_served_once_more_while_gathered_again() -> None:
    cache: VersionedCache[tuple[int, int]] = VersionedCache(10, ttl_s=60)
    source = Source()
    await cache.get("ann", 1, lambda: source.gather(1), generation="catalogue-1")

    stale = await cache.get("ann", 1, lambda: source.gather(1), generation="catalogue-2")
    await cache.settled()
    fresh = await cache.get("ann", 1, lambda: source.gather(1), generation="catalogue-2")

    assert (stale, fresh) == ((1, 1), (1, 2))
    assert source.calls == 2


class Metas:
    """An index's meta records, as the embedder's watermarks leave them."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, object]] = {}
        self.reads = 0

    async def read_meta(self, key: str) -> dict[str, object] | None:
        return None

    async def read_metas(self, prefix: str) -> dict[str, dict[str, object]]:
        self.reads += 1
        return {k: v for k, v in self.records.items() if k.startswith(prefix)}


async def test_the_catalogue_version_follows_the_watermarks_read_in_the_background() -> None:
    metas, clock = Metas(), Clock()
    catalogue = CatalogueClock(metas, every_s=1.0, clock=clock)  # type: ignore[arg-type]
    before = await catalogue.version()
    metas.records["watermarks/attune.content/0"] = {"epoch": 0, "offset": 41}

    assert await catalogue.version() == before  # read at most every second
    clock.now = 1.5
    assert await catalogue.version() == before  # the read starts; this request does not wait
    await asyncio.sleep(0)
    assert await catalogue.version() != before
    assert metas.reads == 2
