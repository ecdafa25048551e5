"""Read the user model back: what the query service asks of Redis."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from services.common.userstore.decay import DecayRates
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.namespace import Namespaces

UserVersion = tuple[str, bytes | str | None, bytes | str | None]
"""Compared, never read: equal versions mean the same folded model (see
:meth:`UserModelReader.version`)."""


@dataclass(frozen=True)
class Interaction:
    item_id: str
    strength: float
    last_seen: datetime


@dataclass(frozen=True)
class UserModel:
    tenant: str
    user_id: str
    events: int
    first_seen: datetime | None
    last_seen: datetime | None
    mean_rating: float | None
    event_counts: dict[str, int]
    recent: list[Interaction]  # newest first
    tag_affinity: dict[str, float]  # decayed to the time of reading, strongest first
    traits: dict[str, object] = field(default_factory=dict)

    @property
    def has_history(self) -> bool:
        return self.events > 0


def _ms_to_datetime(value: bytes | str | float | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value) / 1000, UTC)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _newest(pipe: Any, key: str, count: int) -> None:
    """Queue ZRANGE key 0 count-1 REV WITHSCORES, read back by :func:`_pairs`. Issued raw:
    redis-py's own ``withscores`` reply conversion re-encodes every RESP3 score to bytes
    and parses it again (~1.5 us a member; a recommendation reads ~700 members)."""
    pipe.execute_command("ZRANGE", key, 0, count - 1, "REV", "WITHSCORES")


def _pairs(reply: Any) -> list[tuple[str, float]]:
    """(member, score) of a raw ZRANGE WITHSCORES reply: RESP3 ``[[member, score], ...]``
    or RESP2's flat ``[member, score, ...]``."""
    if not reply:
        return []
    if isinstance(reply[0], list | tuple):
        return [(_text(member), float(score)) for member, score in reply]
    return [
        (_text(member), float(score)) for member, score in zip(reply[::2], reply[1::2], strict=True)
    ]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Ranked:
    """A tenant's trending or popular list as read: scores before decay."""

    read_at: float  # time.monotonic()
    depth: int  # how many were asked for (the list may be shorter)
    ranked: list[tuple[str, float]]
    landmark: float | None


RANKED_DEPTH = 300
"""How many of a cached list are read at least: a recommendation asks for its pool (50
for 10 results) plus the user's exclusions (up to ``recent_items_limit``, 200)."""


class UserModelReader:
    """Reads the live namespace (``keys.namespace`` is the logical name; a replay may
    have switched the pointer to another physical namespace).

    With ``ranked_cache_s`` > 0, a tenant's trending and popular lists are read from
    Redis at most that often (at least :data:`RANKED_DEPTH` deep) and decayed to the
    time of each call; a user's own model is always read fresh.

    Decays are to ``clock()``, the wall clock unless given: an evaluation replaying a
    past timeline reads as of its cut-off."""

    def __init__(
        self, redis: Redis, keys: UserModelKeys, decay: DecayRates, *,
        ranked_cache_s: float = 0.0, clock: Callable[[], datetime] = _utc_now,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.namespaces = Namespaces(redis, keys.namespace)
        self.decay = decay
        self.ranked_cache_s = ranked_cache_s
        self.clock = clock
        self._ranked: dict[str, _Ranked] = {}

    async def version(self, tenant: str, user_id: str) -> UserVersion:
        """What changes whenever an event of the user's is folded (one Redis command): the
        live namespace, the count of events folded and the latest event's time."""
        namespace = await self.namespaces.active()
        keys = UserModelKeys(namespace).user(tenant, user_id)
        events, last_ms = await self.redis.hmget(keys.state, ["events", "last_ms"])
        return namespace, events, last_ms

    async def user(
        self, tenant: str, user_id: str, *, now: datetime | None = None, recent_limit: int = 200
    ) -> UserModel:
        """The user's model (empty, not an error, for a user never seen)."""
        now = now or self.clock()
        keys = (await self.namespaces.active_keys()).user(tenant, user_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.state)
        _newest(pipe, keys.recent, recent_limit)
        pipe.hgetall(keys.strength)
        pipe.hgetall(keys.tags)
        pipe.hgetall(keys.events)
        state, recent, strengths, tags, counts = await pipe.execute()

        state = {_text(k): _text(v) for k, v in state.items()}
        strength = {_text(k): float(v) for k, v in strengths.items()}
        interactions = [
            Interaction(
                item_id=item,
                strength=strength.get(item, 0.0),
                last_seen=datetime.fromtimestamp(score / 1000, UTC),
            )
            for item, score in _pairs(recent)
        ]
        rating_count = float(state.get("rating_count", 0))
        mean_rating = float(state["rating_sum"]) / rating_count if rating_count else None
        return UserModel(
            tenant=tenant,
            user_id=user_id,
            events=int(state.get("events", 0)),
            first_seen=_ms_to_datetime(state.get("first_ms")),
            last_seen=_ms_to_datetime(state.get("last_ms")),
            mean_rating=mean_rating,
            event_counts={_text(k): int(v) for k, v in counts.items()},
            recent=interactions,
            tag_affinity=self._decayed_tags(tags, now),
            traits=json.loads(state["traits"]) if "traits" in state else {},
        )

    def _decayed_tags(self, raw: dict[bytes, bytes], now: datetime) -> dict[str, float]:
        now_ms = now.timestamp() * 1000
        half_life_ms = self.decay.tag_half_life_ms
        affinity = {}
        for tag, stored in raw.items():
            value, _, at = _text(stored).partition(":")
            age = max(0.0, now_ms - float(at))
            affinity[_text(tag)] = float(value) * 2 ** (-age / half_life_ms)
        return dict(sorted(affinity.items(), key=lambda kv: -kv[1]))

    async def trending(
        self, tenant: str, limit: int, *, now: datetime | None = None
    ) -> list[tuple[str, float]]:
        """Items by popularity with the trending half-life, scores as of ``now``."""
        keys = (await self.namespaces.active_keys()).tenant(tenant)
        rate = self.decay.trending_rate_per_ms
        return await self._decayed(keys.trending, keys.meta, "trending", rate, limit, now)

    async def popular(
        self, tenant: str, limit: int, *, now: datetime | None = None
    ) -> list[tuple[str, float]]:
        """Items by positive strength: all time, or with the popularity half-life."""
        keys = (await self.namespaces.active_keys()).tenant(tenant)
        rate = self.decay.popularity_rate_per_ms
        return await self._decayed(keys.popular, keys.meta, "popular", rate, limit, now)

    async def _decayed(
        self, key: str, meta: str, name: str, rate: float, limit: int, now: datetime | None
    ) -> list[tuple[str, float]]:
        entry = await self._read_ranked(key, meta, name, limit)
        factor = 1.0
        if rate and entry.landmark is not None:
            now_ms = (now or self.clock()).timestamp() * 1000
            # A landmark ahead of the reading time (a clock that ran ahead, within the
            # skew the fold allows, or state folded before it was bounded) decays
            # nothing rather than growing every score: the order is the same either way.
            factor = math.exp(min(0.0, max(rate * (entry.landmark - now_ms), -700.0)))
        ranked = entry.ranked if len(entry.ranked) <= limit else entry.ranked[:limit]
        return [(item, score * factor) for item, score in ranked]

    async def _read_ranked(self, key: str, meta: str, name: str, limit: int) -> _Ranked:
        clock = time.monotonic()
        cached = self._ranked.get(key) if self.ranked_cache_s > 0 else None
        if cached and cached.depth >= limit and clock - cached.read_at <= self.ranked_cache_s:
            return cached
        depth = max(limit, RANKED_DEPTH) if self.ranked_cache_s > 0 else limit
        pipe = self.redis.pipeline(transaction=False)
        _newest(pipe, key, depth)
        pipe.hget(meta, f"{name}_landmark_ms")
        ranked, landmark = await pipe.execute()
        entry = _Ranked(
            read_at=clock,
            depth=depth,
            ranked=_pairs(ranked),
            landmark=float(landmark) if landmark is not None else None,
        )
        if self.ranked_cache_s > 0:
            if len(self._ranked) >= 10_000:  # tenants x lists x namespaces: bounded
                self._ranked.clear()
            self._ranked[key] = entry
        return entry

    async def cooccurring(
        self, tenant: str, item_ids: Sequence[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        """For each item, the items most often engaged with by the same users."""
        if not item_ids:
            return {}
        keys = (await self.namespaces.active_keys()).tenant(tenant)
        pipe = self.redis.pipeline(transaction=False)
        for item_id in item_ids:
            _newest(pipe, keys.co(item_id), limit)
        results = await pipe.execute()
        return {item_id: _pairs(ranked) for item_id, ranked in zip(item_ids, results, strict=True)}


__all__ = ["Interaction", "UserModel", "UserModelReader", "UserVersion"]
