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
from collections import defaultdict
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from schemas.events import BehaviourEvent
from services.common.records import Envelope
from services.common.userstore.decay import DAY_MS
from services.common.userstore.keys import UserModelKeys
from services.usermodel.inputs import (
    MAX_TAG_CHARS,
    MAX_TAGS_PER_EVENT,
    MAX_TRAIT_NAME_CHARS,
    MAX_TRAIT_VALUE_BYTES,
    FoldConfig,
    dedupe_id,
    event_name,
    event_tags,
    event_time_ms,
    fold_input,
    identify_traits,
    kept_traits,
    outbox_entry,
)

ScriptCall = tuple[list[str], list[Any]]  # KEYS, ARGV
CLUSTER_CONCURRENCY = 16  # script calls in flight at once on a Redis Cluster


def _script(name: str) -> str:
    return files("services.usermodel").joinpath("scripts", name).read_text()


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
    """The user-script calls of one lane of a batch, ready to send (to any namespace)."""

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
        return await self.apply(self.prepare(envelopes), keys)

    def prepare(self, envelopes: Sequence[Envelope[BehaviourEvent]]) -> list[PreparedFold]:
        """The CPU part (grouping, script arguments), to run while Redis is busy; it
        does not depend on the namespace, which a replay's switch may change."""
        steps = self._prepare_steps(envelopes)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                lanes: list[PreparedFold] = done.value
                return lanes

    async def prepare_yielding(
        self, envelopes: Sequence[Envelope[BehaviourEvent]], *, slice_events: int = 200
    ) -> list[PreparedFold]:
        """:meth:`prepare`, letting the event loop run every ``slice_events`` events (so
        that a batch being folded meanwhile gets its replies and sends its next calls)."""
        steps = self._prepare_steps(envelopes)
        done_since = 0
        while True:
            try:
                done_since += next(steps)
            except StopIteration as done:
                lanes: list[PreparedFold] = done.value
                return lanes
            if done_since >= slice_events:
                done_since = 0
                await asyncio.sleep(0)

    def _prepare_steps(
        self, envelopes: Sequence[Envelope[BehaviourEvent]]
    ) -> Generator[int, None, list[PreparedFold]]:
        """Yields how many events each user's payload took; returns the lanes."""
        lanes: list[dict[tuple[str, str], list[Envelope[BehaviourEvent]]]] = [
            defaultdict(list) for _ in range(LANES)
        ]
        for envelope in sorted(envelopes, key=lambda e: (e.partition_id, e.offset)):
            event = envelope.message
            lanes[envelope.partition % LANES][(event.tenant, event.user_key)].append(envelope)
        prepared = []
        for by_user in lanes:
            if not by_user:
                continue
            payloads = []
            for events in by_user.values():
                payloads.append(orjson.dumps([fold_input(e, self.config) for e in events]))
                yield len(events)
            events_in_lane = sum(len(events) for events in by_user.values())
            prepared.append(PreparedFold(list(by_user), payloads, events_in_lane))
        return prepared

    async def apply(self, prepared: Sequence[PreparedFold], keys: UserModelKeys) -> FoldStats:
        stats = await asyncio.gather(*(self._apply_lane(lane, keys) for lane in prepared))
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

    async def _apply_lane(self, lane: PreparedFold, keys: UserModelKeys) -> FoldStats:
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
    "MAX_TAGS_PER_EVENT",
    "MAX_TAG_CHARS",
    "MAX_TRAIT_NAME_CHARS",
    "MAX_TRAIT_VALUE_BYTES",
    "FoldConfig",
    "FoldStats",
    "PreparedFold",
    "UserModelFolder",
    "dedupe_id",
    "event_name",
    "event_tags",
    "event_time_ms",
    "fold_input",
    "identify_traits",
    "kept_traits",
    "outbox_entry",
]
