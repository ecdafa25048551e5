"""Which Redis namespace holds the live user model.

``{logical}.active`` (a plain string key) names the physical namespace readers and the
live consumer use; absent, it is the logical name itself (``ATTUNE_REDIS_NAMESPACE``).
A replay builds ``{logical}-r<time>`` beside the live one, then switches this pointer
in one SET: readers and the consumer follow within ``ttl_s``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.common.offsets import Watermark
from services.common.userstore.keys import UserModelKeys


class Namespaces:
    def __init__(self, redis: Redis, logical: str, *, ttl_s: float = 1.0) -> None:
        self.redis = redis
        self.logical = logical
        self.ttl_s = ttl_s
        self._cached: tuple[float, str] | None = None

    @property
    def pointer_key(self) -> str:
        return f"{self.logical}.active"

    async def active(self) -> str:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self.ttl_s:
            value = await self.redis.get(self.pointer_key)
            name = value.decode() if isinstance(value, bytes) else (value or self.logical)
            self._cached = (now, name)
        return self._cached[1]

    async def active_keys(self) -> UserModelKeys:
        return UserModelKeys(await self.active())

    async def switch(self, namespace: str) -> None:
        await self.redis.set(self.pointer_key, namespace)
        self._cached = None

    def new_name(self, now: datetime | None = None) -> str:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%f")
        return f"{self.logical}-r{stamp}"

    async def drop(self, namespace: str, *, batch: int = 1_000) -> int:
        """Delete every key of a namespace that is not the active one; return how many."""
        if namespace == await self.active():
            raise ValueError(f"{namespace} is the active namespace; switch away first")
        deleted = 0
        keys: list[bytes] = []
        async for key in self.redis.scan_iter(
            match=UserModelKeys(namespace).pattern(), count=batch
        ):
            keys.append(key)
            if len(keys) >= batch:
                deleted += await self.redis.unlink(*keys)
                keys.clear()
        if keys:
            deleted += await self.redis.unlink(*keys)
        return deleted


class RedisWatermarks:
    """The partitions' watermarks of one namespace (see services/common/offsets.py)."""

    def __init__(self, redis: Redis, keys: UserModelKeys) -> None:
        self.redis = redis
        self.keys = keys  # the namespace they are the watermarks of
        self.key = keys.watermarks

    async def load_watermarks(self) -> dict[int, Watermark]:
        raw = await self.redis.hgetall(self.key)
        return {int(field): Watermark.from_json(value) for field, value in raw.items()}

    async def save_watermarks(self, marks: Mapping[int, Watermark]) -> None:
        if marks:
            await self.redis.hset(
                self.key, mapping={str(p): mark.to_json() for p, mark in marks.items()}
            )


__all__ = ["Namespaces", "RedisWatermarks"]
