"""Fold behaviour events into the per-user model and the tenant's aggregates in Redis.

Per batch, three round trips:
1. per user, ``fold_user.lua`` applies the user's events atomically (skipping what the
   user's state says is already applied) and returns the user's outbox of tenant
   updates not yet confirmed;
2. per tenant, ``fold_tenant.lua`` applies those updates (skipping offsets already
   applied for their partition);
3. the applied outboxes are cleared.
A crash between any two steps is repaired by the redelivery: step 1 skips, returns
the outbox again, step 2 skips what it already applied (it keeps, per user and
partition, the last offset applied). Each script touches one Redis Cluster slot.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from schemas.events import BehaviourEvent
from services.common.records import Envelope
from services.common.settings import Settings
from services.common.userstore.decay import DecayRates
from services.common.userstore.keys import UserModelKeys

MAX_TAGS_PER_EVENT = 32

ScriptCall = tuple[list[str], list[Any]]  # KEYS, ARGV
CLUSTER_CONCURRENCY = 16  # script calls in flight at once on a Redis Cluster


def _script(name: str) -> str:
    return files("services.usermodel").joinpath("scripts", name).read_text()


@dataclass(frozen=True)
class FoldConfig:
    event_weights: Mapping[str, float]
    default_event_weight: float = 1.0
    rating_weight: float = 2.0
    rating_prior_mean: float = 3.0
    rating_prior_count: float = 2.0
    recent_items_limit: int = 200
    tag_half_life_days: float = 30.0
    trending_half_life_days: float = 7.0
    popularity_half_life_days: float = 730.0
    cooccurrence_window: int = 5
    dedupe_window: int = 256
    max_clock_skew_ms: int = 86_400_000

    @classmethod
    def from_settings(cls, settings: Settings) -> FoldConfig:
        return cls(
            event_weights=dict(settings.event_weights),
            default_event_weight=settings.default_event_weight,
            rating_weight=settings.rating_weight,
            rating_prior_mean=settings.rating_prior_mean,
            rating_prior_count=settings.rating_prior_count,
            recent_items_limit=settings.recent_items_limit,
            tag_half_life_days=settings.tag_half_life_days,
            trending_half_life_days=settings.trending_half_life_days,
            popularity_half_life_days=settings.popularity_half_life_days,
            cooccurrence_window=settings.cooccurrence_window,
            max_clock_skew_ms=int(settings.max_clock_skew_s * 1000),
        )

    @property
    def decay(self) -> DecayRates:
        """The rates the readers decay the stored scores with (the same half-lives)."""
        return DecayRates(
            tag_half_life_days=self.tag_half_life_days,
            trending_half_life_days=self.trending_half_life_days,
            popularity_half_life_days=self.popularity_half_life_days,
        )

    def tenant_script_config(self) -> str:
        decay = self.decay
        return json.dumps(
            {
                "trending_rate": decay.trending_rate_per_ms,
                "popularity_rate": decay.popularity_rate_per_ms,
            }
        )

    def user_script_config(self, *, direct: bool = False) -> str:
        return json.dumps(
            {
                "direct": direct,
                "rating_weight": self.rating_weight,
                "rating_prior_mean": self.rating_prior_mean,
                "rating_prior_count": self.rating_prior_count,
                "recent_limit": self.recent_items_limit,
                "tag_half_life_ms": self.decay.tag_half_life_ms,
                "dedupe_window": self.dedupe_window,
                "cooccurrence_window": self.cooccurrence_window,
            }
        )

    def weight_of(self, event_name: str) -> float:
        return self.event_weights.get(event_name, self.default_event_weight)


def event_name(event: BehaviourEvent) -> str:
    """The name an event is counted and weighted under: the track event, else its type."""
    return event.event if event.type == "track" and event.event else event.type


def event_tags(event: BehaviourEvent) -> list[str]:
    """Tags the event carries: ``properties.tags`` (list) and ``properties.category``."""
    extra = event.properties.model_extra or {}
    found: list[str] = []
    tags = extra.get("tags")
    if isinstance(tags, list):
        found.extend(str(tag).strip() for tag in tags if isinstance(tag, str | int))
    category = extra.get("category")
    if isinstance(category, str):
        found.append(category.strip())
    return list(dict.fromkeys(tag for tag in found if tag))[:MAX_TAGS_PER_EVENT]


def identify_traits(event: BehaviourEvent) -> dict[str, Any]:
    """Traits of an identify call: top-level (Segment) or in context.traits (RudderStack)."""
    if event.type != "identify":
        return {}
    in_context = event.context.get("traits")
    traits = {**(in_context if isinstance(in_context, dict) else {}), **event.traits}
    return {key: _storable(value) for key, value in traits.items()}


_INT64 = range(-(2**63), 2**63)


def _storable(value: Any) -> Any:
    """A trait as the fold can pass it on: an integer beyond 64 bits (valid JSON, which
    orjson refuses to write) becomes the double Lua would make of it, or its digits
    when no double holds it."""
    if isinstance(value, dict):
        return {key: _storable(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_storable(inner) for inner in value]
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        try:
            return float(value)
        except OverflowError:
            return str(value)
    return value


def event_time_ms(envelope: Envelope[BehaviourEvent], config: FoldConfig) -> int:
    """When the event happened, as the fold counts it: its timestamp, but no later than
    its Kafka record's time plus the allowed clock skew (ingest refuses such events; a
    producer writing to Kafka directly may not), so that one event from a wrong clock
    cannot move its tenant's decayed scores years ahead. The record time is in the log:
    a replay folds the same time."""
    event_ms = int(envelope.message.timestamp.timestamp() * 1000)
    if envelope.timestamp_ms > 0:
        return min(event_ms, envelope.timestamp_ms + config.max_clock_skew_ms)
    return event_ms


def fold_input(envelope: Envelope[BehaviourEvent], config: FoldConfig) -> dict[str, Any]:
    """One event as fold_user.lua reads it (JSON false, never null, for absent values)."""
    event = envelope.message
    name = event_name(event)
    rating = event.properties.rating
    return {
        "partition": envelope.partition_id,
        "offset": envelope.offset,
        "message_id": event.message_id,
        "time_ms": event_time_ms(envelope, config),
        "event": name,
        "item_id": event.properties.item_id or False,
        "weight": config.weight_of(name) if rating is None else False,
        "rating": rating if rating is not None else False,
        "tags": event_tags(event),
        "traits": identify_traits(event) or False,
    }


_SHORT_OUTBOX_KEYS = {
    "p": "partition", "o": "offset", "it": "item_id", "s": "strength", "t": "time_ms",
    "co": "pairs",
}  # fmt: skip


def outbox_entry(raw: bytes | str) -> dict[str, Any]:
    """One tenant update from a user's outbox. An outbox left by a crash of a version
    that wrote two-letter keys is read too, so that an upgrade never blocks a partition."""
    entry: dict[str, Any] = orjson.loads(raw)
    if "p" in entry:
        return {_SHORT_OUTBOX_KEYS.get(key, key): value for key, value in entry.items()}
    return entry


@dataclass
class FoldStats:
    events: int = 0
    users: int = 0
    tenant_updates: int = 0

    def __add__(self, other: FoldStats) -> FoldStats:
        return FoldStats(
            self.events + other.events,
            self.users + other.users,
            self.tenant_updates + other.tenant_updates,
        )


@dataclass
class PreparedFold:
    """The user-script calls of one lane of a batch, ready to send."""

    keys: UserModelKeys
    users: list[tuple[str, str]]
    payloads: list[bytes]
    events: int


LANES = 2  # partitions are folded in this many concurrent lanes (disjoint users)


class UserModelFolder:
    """Applies batches of decoded events to the Redis namespace ``keys`` names.

    A batch is cut into lanes by partition: a user's events are all in one partition,
    so lanes share no user and run concurrently, each on its own connection; while one
    lane's scripts run in Redis, this process prepares or reads the other's.
    """

    def __init__(self, redis: Redis, config: FoldConfig, *, direct: bool = False) -> None:
        """``direct``: keep no outbox (only for a replay into a namespace that is thrown
        away when it fails: a crash there is not recovered, it is started again)."""
        self.redis = redis
        self.config = config
        self.direct = direct
        self._user_config = config.user_script_config(direct=direct)
        self._fold_user = redis.register_script(_script("fold_user.lua"))
        self._fold_tenant = redis.register_script(_script("fold_tenant.lua"))

    async def fold(
        self, envelopes: Sequence[Envelope[BehaviourEvent]], keys: UserModelKeys
    ) -> FoldStats:
        return await self.apply(self.prepare(envelopes, keys))

    def prepare(
        self, envelopes: Sequence[Envelope[BehaviourEvent]], keys: UserModelKeys
    ) -> list[PreparedFold]:
        """The CPU part (grouping, script arguments), to run while Redis is busy."""
        lanes: list[dict[tuple[str, str], list[Envelope[BehaviourEvent]]]] = [
            defaultdict(list) for _ in range(LANES)
        ]
        for envelope in sorted(envelopes, key=lambda e: (e.partition_id, e.offset)):
            event = envelope.message
            lanes[envelope.partition % LANES][(event.tenant, event.user_key)].append(envelope)
        return [
            PreparedFold(
                keys=keys,
                users=list(by_user),
                payloads=[
                    orjson.dumps([fold_input(e, self.config) for e in events])
                    for events in by_user.values()
                ],
                events=sum(len(events) for events in by_user.values()),
            )
            for by_user in lanes
            if by_user
        ]

    async def apply(self, prepared: Sequence[PreparedFold]) -> FoldStats:
        stats = await asyncio.gather(*(self._apply_lane(lane) for lane in prepared))
        return FoldStats(
            events=sum(s.events for s in stats),
            users=sum(s.users for s in stats),
            tenant_updates=sum(s.tenant_updates for s in stats),
        )

    async def _run_scripts(self, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run script calls in one round trip: a pipeline on a single Redis; on a Redis
        Cluster (where redis-py does not pipeline scripts) concurrently, each call going
        to the node that holds its slot."""
        if isinstance(self.redis, RedisCluster):
            limit = asyncio.Semaphore(CLUSTER_CONCURRENCY)

            async def call(keys: list[str], args: list[Any]) -> Any:
                async with limit:
                    return await script(keys=keys, args=args)

            return list(await asyncio.gather(*(call(keys, args) for keys, args in calls)))
        pipe = self.redis.pipeline(transaction=False)
        for keys, args in calls:
            await script(keys=keys, args=args, client=pipe)
        return list(await pipe.execute())

    async def _apply_lane(self, lane: PreparedFold) -> FoldStats:
        keys = lane.keys
        outboxes = await self._run_scripts(
            self._fold_user,
            [
                (keys.user(tenant, user).for_fold(), [self._user_config, payload])
                for (tenant, user), payload in zip(lane.users, lane.payloads, strict=True)
            ],
        )

        updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        users_with_updates: list[tuple[str, str]] = []
        for (tenant, user), outbox in zip(lane.users, outboxes, strict=True):
            if outbox:
                users_with_updates.append((tenant, user))
                updates[tenant].extend({**outbox_entry(entry), "user": user} for entry in outbox)

        applied = 0
        if updates:
            calls = [self._tenant_call(keys, tenant, found) for tenant, found in updates.items()]
            applied = sum(await self._run_scripts(self._fold_tenant, calls))
            if not self.direct:
                pipe = self.redis.pipeline(transaction=False)
                for tenant, user in users_with_updates:
                    pipe.delete(keys.user(tenant, user).outbox)
                await pipe.execute()
        return FoldStats(events=lane.events, users=len(lane.users), tenant_updates=applied)

    def _tenant_call(
        self, namespace: UserModelKeys, tenant: str, tenant_updates: list[dict[str, Any]]
    ) -> ScriptCall:
        keys = namespace.tenant(tenant)
        tenant_updates.sort(key=lambda u: (u["partition"], u["offset"]))
        co_items: dict[str, int] = {}
        for update in tenant_updates:
            # cjson encodes an empty Lua table as {}; it means no pairs.
            update["pairs"] = update["pairs"] if isinstance(update["pairs"], list) else []
            for item in (update["item_id"], *update["pairs"]):
                co_items.setdefault(item, len(co_items) + 5)  # KEYS 1-4 are fixed
        script_keys = [keys.applied, keys.trending, keys.meta, keys.popular]
        script_keys.extend(keys.co(item) for item in co_items)
        return script_keys, [
            self.config.tenant_script_config(),
            orjson.dumps({"updates": tenant_updates, "keys": co_items}),
        ]


__all__ = [
    "FoldConfig",
    "FoldStats",
    "PreparedFold",
    "UserModelFolder",
    "event_name",
    "event_tags",
    "event_time_ms",
    "fold_input",
    "outbox_entry",
]
