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
import base64
import hashlib
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
from services.common.userstore.decay import DAY_MS, DecayRates
from services.common.userstore.keys import UserModelKeys

MAX_TAGS_PER_EVENT = 32
MAX_TAG_CHARS = 100  # longer tags are not kept
MAX_TRAIT_NAME_CHARS = 100  # longer trait names are not kept
MAX_TRAIT_VALUE_BYTES = 1_024  # traits whose JSON value is longer are not kept

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
    max_clock_skew_ms: int = 86_400_000
    dedupe_max_ids: int = 1_000
    dedupe_window_hours: float = 24.0
    max_event_names: int = 50
    max_tags_per_user: int = 200
    max_traits: int = 64
    inactive_user_ttl_days: float = 0.0
    max_ranked_items: int = 100_000
    max_cooccurring: int = 1_000

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
            dedupe_max_ids=settings.dedupe_max_ids,
            dedupe_window_hours=settings.dedupe_window_hours,
            max_event_names=settings.max_event_names,
            max_tags_per_user=settings.max_tags_per_user,
            max_traits=settings.max_traits,
            inactive_user_ttl_days=settings.inactive_user_ttl_days,
            max_ranked_items=settings.max_ranked_items,
            max_cooccurring=settings.max_cooccurring,
        )

    @property
    def decay(self) -> DecayRates:
        """The rates the readers decay the stored scores with (the same half-lives)."""
        return DecayRates(
            tag_half_life_days=self.tag_half_life_days,
            trending_half_life_days=self.trending_half_life_days,
            popularity_half_life_days=self.popularity_half_life_days,
        )

    def tenant_script_config(self, *, direct: bool = False) -> str:
        decay = self.decay
        return json.dumps(
            {
                "trending_rate": decay.trending_rate_per_ms,
                "popularity_rate": decay.popularity_rate_per_ms,
                "marks": not direct,
                "max_ranked": self.max_ranked_items,
                "max_cooccurring": self.max_cooccurring,
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
                "cooccurrence_window": self.cooccurrence_window,
                "dedupe_ids": self.dedupe_max_ids,
                "dedupe_window_ms": int(self.dedupe_window_hours * 3_600_000),
                "max_event_names": self.max_event_names,
                "max_tags": self.max_tags_per_user,
                "max_traits": self.max_traits,
                "ttl_ms": int(self.inactive_user_ttl_days * DAY_MS),
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
    kept = (tag for tag in found if tag and len(tag) <= MAX_TAG_CHARS)
    return list(dict.fromkeys(kept))[:MAX_TAGS_PER_EVENT]


def identify_traits(event: BehaviourEvent) -> dict[str, Any]:
    """Traits of an identify call: top-level (Segment) or in context.traits (RudderStack)."""
    if event.type != "identify":
        return {}
    in_context = event.context.get("traits")
    return {**(in_context if isinstance(in_context, dict) else {}), **event.traits}


def kept_traits(traits: dict[str, Any]) -> list[list[Any]]:
    """The traits the fold may keep, as [name, value] pairs sorted by name (the order
    fold_user.lua admits new names in, up to the cap): not too long a name or value."""
    return [
        [name, value]
        for name, value in sorted(traits.items())
        if len(name) <= MAX_TRAIT_NAME_CHARS and len(orjson.dumps(value)) <= MAX_TRAIT_VALUE_BYTES
    ]


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


def dedupe_id(message_id: str) -> str:
    """What the deduplication window keeps of a messageId: 96 bits of its hash (16
    characters, whatever the id's length; a false match within one user's window is
    about 2^-77 likely)."""
    return base64.b64encode(hashlib.blake2b(message_id.encode(), digest_size=12).digest()).decode()


def fold_input(envelope: Envelope[BehaviourEvent], config: FoldConfig) -> dict[str, Any]:
    """One event as fold_user.lua reads it (JSON false, never null, for absent values)."""
    event = envelope.message
    name = event_name(event)
    rating = event.properties.rating
    time_ms = event_time_ms(envelope, config)
    return {
        "partition": envelope.partition_id,
        "offset": envelope.offset,
        "message_id": dedupe_id(event.message_id),
        "time_ms": time_ms,
        # Arrival: the Kafka record's time (in the log, so a replay sees the same).
        "arrival_ms": envelope.timestamp_ms if envelope.timestamp_ms > 0 else time_ms,
        "event": name,
        "item_id": event.properties.item_id or False,
        "weight": config.weight_of(name) if rating is None else False,
        "rating": rating if rating is not None else False,
        "tags": event_tags(event),
        "traits": kept_traits(identify_traits(event)) or False,
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
        self._tenant_config = config.tenant_script_config(direct=direct)
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

    async def expire_inactive(self, keys: UserModelKeys, *, batch: int = 1_000) -> int:
        """Give every user of the namespace the expiry the live fold gives (a replay folds
        without: see fold_user.lua); return how many users have one."""
        ttl_ms = int(self.config.inactive_user_ttl_days * DAY_MS)
        if ttl_ms <= 0:
            return 0
        done = 0
        states: list[bytes | str] = []
        pattern = f"{keys.namespace}:u:*:state"
        async for raw in self.redis.scan_iter(match=pattern, count=batch):
            states.append(raw)
            if len(states) >= batch:
                done += await self._expire(states, ttl_ms)
                states.clear()
        return done + (await self._expire(states, ttl_ms) if states else 0)

    async def _expire(self, states: Sequence[bytes | str], ttl_ms: int) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for state in states:
            pipe.hget(state, "last_ms")
        last = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        for state, last_ms in zip(states, last, strict=True):
            if last_ms is not None:
                name = state.decode() if isinstance(state, bytes) else state
                base = name[: -len("state")]
                for kind in ("state", "recent", "strength", "tags", "events", "seen"):
                    pipe.pexpireat(base + kind, int(last_ms) + ttl_ms)
        await pipe.execute()
        return sum(1 for last_ms in last if last_ms is not None)

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
            marks = {
                tenant: sorted({f"{u['user']}|{u['partition']}" for u in found})
                for tenant, found in updates.items()
            }
            calls = [self._tenant_call(keys, tenant, found) for tenant, found in updates.items()]
            applied = sum(await self._run_scripts(self._fold_tenant, calls))
            if not self.direct:
                pipe = self.redis.pipeline(transaction=False)
                for tenant, user in users_with_updates:
                    pipe.delete(keys.user(tenant, user).outbox)
                await pipe.execute()
                # Only once the outboxes are gone: a mark guards an outbox's redelivery,
                # and no outbox left means nothing to guard (the marks stay bounded).
                pipe = self.redis.pipeline(transaction=False)
                for tenant, fields in marks.items():
                    pipe.hdel(keys.tenant(tenant).applied, *fields)
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
            self._tenant_config,
            orjson.dumps(
                {"updates": tenant_updates, "keys": co_items, "co_prefix": keys.co_prefix}
            ),
        ]


__all__ = [
    "FoldConfig",
    "FoldStats",
    "PreparedFold",
    "UserModelFolder",
    "dedupe_id",
    "event_name",
    "event_tags",
    "event_time_ms",
    "fold_input",
    "outbox_entry",
]
