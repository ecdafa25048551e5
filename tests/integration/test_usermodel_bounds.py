"""The user model's bounds on a real Redis: messageId deduplication by arrival, the
offset check on its own, the caps per user and per tenant, the TTL of inactive users,
and a replay that gives the live digest with the per-user caps hit."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.events import BehaviourEvent
from schemas.topics import EVENTS
from services.app import datasets
from services.app.bootstrap import Service, assemble
from services.app.embedded import EmbeddedStack
from services.common.records import Envelope
from services.common.settings import Settings
from services.common.userstore.digest import digest_namespace
from services.common.userstore.keys import UserKeys, UserModelKeys
from services.common.userstore.namespace import Namespaces, RedisWatermarks
from services.usermodel.fold import MAX_TAG_CHARS, FoldConfig, UserModelFolder, dedupe_id
from services.usermodel.replay import rebuild_namespace
from tests.integration.test_replay import caught_up
from tests.polling import eventually

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
CONFIG = FoldConfig(
    event_weights={"view": 1.0, "like": 3.0, "dislike": -3.0},
    recent_items_limit=50,
    tag_half_life_days=1.0,
    trending_half_life_days=1.0,
    popularity_half_life_days=0.0,
    cooccurrence_window=3,
)


@pytest.fixture
async def redis(stack: EmbeddedStack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


def namespace() -> UserModelKeys:
    return UserModelKeys(namespace=f"bounds-{uuid.uuid4().hex[:8]}")


def envelope(
    offset: int, user: str, event: str, item: str | None, *, minutes: float,
    arrival_s: float, message_id: str, tenant: str = "acme", **extra: Any,
) -> Envelope[BehaviourEvent]:  # fmt: skip
    """An event at ``offset`` of partition 0; its Kafka record time is ``arrival_s``
    seconds after T0."""
    payload = {
        "tenant": tenant, "event": event, "userId": user, "messageId": message_id,
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "properties": {"item_id": item, **extra.pop("properties", {})}, **extra,
    }  # fmt: skip
    return Envelope(
        message=BehaviourEvent.model_validate(payload), topic=EVENTS.name, partition=0,
        offset=offset, key=None, timestamp_ms=T0_MS + int(arrival_s * 1000),
    )  # fmt: skip


def history(n: int, user: str = "ann") -> list[Envelope[BehaviourEvent]]:
    """``n`` events of one user, one every 30 s of arrival, event times a minute apart."""
    return [
        envelope(
            i + 1,
            user,
            ("like", "view", "dislike")[i % 3],
            f"i{i % 120}",
            minutes=i,
            arrival_s=30 * i,
            message_id=f"m{i}",
            properties={"tags": [f"t{i % 7}"]},
        )
        for i in range(n)
    ]


async def fold_in_batches(
    folder: UserModelFolder, events: Sequence[Envelope[BehaviourEvent]], keys: UserModelKeys,
    size: int,
) -> None:  # fmt: skip
    for start in range(0, len(events), size):
        await folder.fold(events[start : start + size], keys)


async def digest(redis: Redis, keys: UserModelKeys, config: FoldConfig = CONFIG) -> str:
    return (await digest_namespace(redis, keys, config.decay)).hexdigest()


async def test_duplicates_of_the_oldest_events_change_nothing(redis: Redis) -> None:
    """A retried batch of old events, at new offsets: messageId deduplication alone."""
    events = history(1_000)
    duplicates = [
        dataclasses.replace(e, offset=1_000 + n + 1, timestamp_ms=e.timestamp_ms + 9 * 3_600_000)
        for n, e in enumerate(events[:100])
    ]  # the oldest 100 by event time and by arrival, again 9 hours later
    folder = UserModelFolder(redis, CONFIG)
    with_duplicates, clean = namespace(), namespace()
    await fold_in_batches(folder, [*events, *duplicates], with_duplicates, 200)
    await fold_in_batches(folder, events, clean, 200)

    assert await digest(redis, with_duplicates) == await digest(redis, clean)
    state = with_duplicates.user("acme", "ann").state
    assert await redis.hget(state, "events") == b"1000"


async def test_the_deduplication_window_is_counted_in_arrivals(redis: Redis) -> None:
    """What remains: a messageId older than dedupe_max_ids arrivals, or than the window
    in arrival time, counts again."""
    config = dataclasses.replace(CONFIG, dedupe_max_ids=10, dedupe_window_hours=1.0)
    folder = UserModelFolder(redis, config)
    keys = namespace()
    events = history(30)  # 30 s apart: 15 minutes of arrivals
    await folder.fold(events, keys)
    ids = await redis.zrange(keys.user("acme", "ann").seen, 0, -1)
    assert sorted(ids) == sorted(dedupe_id(f"m{i}").encode() for i in range(20, 30))

    again = [
        dataclasses.replace(events[25], offset=31, timestamp_ms=events[29].timestamp_ms + 1),
        dataclasses.replace(events[5], offset=32, timestamp_ms=events[29].timestamp_ms + 2),
    ]
    await folder.fold(again, keys)  # m25 is within the window, m5 was pushed out
    assert await redis.hget(keys.user("acme", "ann").state, "events") == b"31"

    late = envelope(
        33, "ann", "view", "x", minutes=40, arrival_s=30 * 29 + 3_601, message_id="m-late"
    )
    await folder.fold([late], keys)  # an hour later: everything before it is forgotten
    assert await redis.zrange(keys.user("acme", "ann").seen, 0, -1) == [
        dedupe_id("m-late").encode()
    ]


async def test_redelivered_offsets_change_nothing_without_message_ids(redis: Redis) -> None:
    """The per-partition offset check alone (no messageId deduplication): the same
    records again, cut into other batches, change nothing."""
    config = dataclasses.replace(CONFIG, dedupe_max_ids=0)
    folder = UserModelFolder(redis, config)
    events = history(400)
    redelivered, once = namespace(), namespace()
    await fold_in_batches(folder, events[:300], redelivered, 100)
    await fold_in_batches(folder, events[150:], redelivered, 70)  # 150 records again
    await fold_in_batches(folder, events, once, 400)

    assert await redis.exists(redelivered.user("acme", "ann").seen) == 0
    assert await digest(redis, redelivered, config) == await digest(redis, once, config)
    assert await redis.hget(redelivered.user("acme", "ann").state, "events") == b"400"


BOUNDED = dataclasses.replace(
    CONFIG, max_event_names=20, max_tags_per_user=100, max_traits=30,
    max_ranked_items=300, max_cooccurring=40, dedupe_max_ids=500,
)  # fmt: skip


def hostile(user: str, n: int, *, tenant: str = "acme", start: int = 0) -> list[dict[str, Any]]:
    """``n`` events of one user: every one a new event name, new tags, an unknown item."""
    return [
        {
            "tenant": tenant,
            "type": "track",
            "event": f"ev-{user}-{i}",
            "userId": user,
            "messageId": f"{user}-{i}",
            "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
            "properties": {
                "item_id": f"unknown-{user}-{i}",
                "value": 1,
                "tags": [f"tag-{user}-{i}-{k}" for k in range(5)],
            },
        }
        for i in range(start, start + n)
    ]


def identify(user: str, n: int, *, tenant: str = "acme") -> dict[str, Any]:
    return {
        "tenant": tenant, "type": "identify", "userId": user, "messageId": f"{user}-id-{n}",
        "timestamp": (T0 + timedelta(seconds=n)).isoformat(),
        "traits": {f"trait-{n}-{k}": "x" * 40 for k in range(50)},
    }  # fmt: skip


def user_bound(keys: UserKeys, config: FoldConfig) -> dict[str, int]:
    """Members per key the caps allow."""
    return {
        keys.recent: config.recent_items_limit,
        keys.strength: config.recent_items_limit,
        keys.tags: config.max_tags_per_user,
        keys.events: config.max_event_names + 1,  # and '(other)'
        keys.seen: config.dedupe_max_ids,
    }


async def members(redis: Redis, key: str) -> int:
    kind = (await redis.type(key)).decode()
    return int(await (redis.zcard(key) if kind == "zset" else redis.hlen(key)))


async def test_a_hostile_user_stays_within_the_caps(redis: Redis) -> None:
    raw = [
        e for n in range(10) for e in (*hostile("eve", 1_000, start=1_000 * n), identify("eve", n))
    ]
    events = [
        Envelope(
            message=BehaviourEvent.model_validate(e), topic=EVENTS.name, partition=0,
            offset=offset, key=None, timestamp_ms=T0_MS + offset,
        )
        for offset, e in enumerate(raw)
    ]  # fmt: skip
    keys = namespace()
    await fold_in_batches(UserModelFolder(redis, BOUNDED), events, keys, 2_000)

    eve = keys.user("acme", "eve")
    for key, cap in user_bound(eve, BOUNDED).items():
        assert 0 < await members(redis, key) <= cap, key
    counts = await redis.hgetall(eve.events)
    assert int(counts[b"(other)"]) == 10_010 - BOUNDED.max_event_names  # identify too
    assert sum(int(n) for n in counts.values()) == 10_010
    traits = json.loads(await redis.hget(eve.state, "traits"))
    assert len(traits) == BOUNDED.max_traits

    # Every member is at most this long: item ids, tags, names, ids; a value 30 bytes.
    longest = max(MAX_TAG_CHARS, len("unknown-eve-9999"))
    per_member = 2 * (longest + 30) + 64  # a hash table or skiplist entry's overhead
    cap_total = sum(user_bound(eve, BOUNDED).values()) * per_member
    state_bytes = BOUNDED.max_traits * (len("trait-9-99") + 42 + 8) + 1_024
    used = sum([int(await redis.memory_usage(k, samples=0) or 0) for k in user_bound(eve, BOUNDED)])
    assert used <= cap_total
    assert int(await redis.memory_usage(eve.state, samples=0) or 0) <= state_bytes

    tenant = keys.tenant("acme")
    assert await redis.zcard(tenant.popular) == BOUNDED.max_ranked_items
    assert await redis.zcard(tenant.trending) == BOUNDED.max_ranked_items
    assert await redis.exists(tenant.applied) == 0
    co_keys = [k async for k in redis.scan_iter(match=tenant.co_prefix + "*")]
    assert 0 < len(co_keys) <= BOUNDED.max_ranked_items
    for key in co_keys:
        assert await redis.zcard(key) <= BOUNDED.max_cooccurring


async def test_the_weakest_tags_go_and_the_strongest_stay(redis: Redis) -> None:
    config = dataclasses.replace(CONFIG, max_tags_per_user=3)
    events = [
        envelope(1, "ann", "like", "a", minutes=0, arrival_s=0, message_id="1",
                 properties={"tags": ["loved", "meh"]}),
        envelope(2, "ann", "dislike", "b", minutes=1, arrival_s=1, message_id="2",
                 properties={"tags": ["hated"]}),
        envelope(3, "ann", "like", "c", minutes=2, arrival_s=2, message_id="3",
                 properties={"tags": ["loved"]}),
        envelope(4, "ann", "like", "d", minutes=3, arrival_s=3, message_id="4",
                 properties={"tags": ["new"]}),
    ]  # fmt: skip
    one_by_one, at_once = namespace(), namespace()
    folder = UserModelFolder(redis, config)
    await fold_in_batches(folder, events, one_by_one, 1)
    await folder.fold(events, at_once)
    # |affinity|: loved ~6, new 3, hated 3 (two minutes older), meh 3 (older still)
    tags = await redis.hgetall(one_by_one.user("acme", "ann").tags)
    assert sorted(tags) == [b"hated", b"loved", b"new"]
    assert await digest(redis, one_by_one, config) == await digest(redis, at_once, config)


async def test_an_inactive_user_expires_on_the_event_clock(redis: Redis) -> None:
    config = dataclasses.replace(CONFIG, inactive_user_ttl_days=1.0)
    now = datetime.now(UTC)
    day = 86_400_000

    def event(user: str, at: datetime, offset: int) -> Envelope[BehaviourEvent]:
        message = BehaviourEvent.model_validate({
            "tenant": "acme", "event": "like", "userId": user, "messageId": f"{user}-{offset}",
            "timestamp": at.isoformat(), "properties": {"item_id": "a", "tags": ["x"]},
        })  # fmt: skip
        return Envelope(
            message=message, topic=EVENTS.name, partition=0, offset=offset, key=None,
            timestamp_ms=int(now.timestamp() * 1000),
        )  # fmt: skip

    keys = namespace()
    folder = UserModelFolder(redis, config)
    await folder.fold(
        [
            event("gone", now - timedelta(days=3), 1),  # inactive for longer than the TTL
            event("active", now - timedelta(days=5), 2),
            event("active", now, 3),
            event("soon", now - timedelta(days=1) + timedelta(seconds=5), 4),
        ],
        keys,
    )
    for part in dataclasses.astuple(keys.user("acme", "gone")):
        assert await redis.exists(part) == 0, part
    active = keys.user("acme", "active")
    deadline = int(now.timestamp() * 1000) + day
    for part in (active.state, active.recent, active.strength, active.tags, active.events):
        assert await redis.pexpiretime(part) == deadline, part
    soon = keys.user("acme", "soon").state
    assert await redis.exists(soon) == 1

    async def expired() -> bool:
        return await redis.exists(soon) == 0

    await eventually(expired, "the user whose TTL ends 5 s from now expires", within=15)
    assert await redis.exists(active.state) == 1
    assert await redis.zscore(keys.tenant("acme").popular, "a") == 12.0  # tenant lists stay


async def test_a_replay_has_the_live_digest_with_the_caps_hit(
    stack: EmbeddedStack, redis: Redis
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = stack.settings(Settings()).model_copy(
        update={
            "kafka_group_prefix": f"bounds-{tag}",
            "redis_namespace": f"bounds-{tag}",
            "max_event_names": 20,
            "max_tags_per_user": 60,
            "max_traits": 30,
            "recent_items_limit": 50,
            "dedupe_max_ids": 600,
            "dedupe_window_hours": 0.0,
            "inactive_user_ttl_days": 30.0,
            "consumer_max_records": 300,
        }
    )
    tenant = f"b{tag}"
    now = datetime.now(UTC)
    users = [f"u{n}" for n in range(6)]
    raw: list[dict[str, Any]] = []
    for user in users:
        raw += hostile(user, 400, tenant=tenant) + [
            identify(user, k, tenant=tenant) for k in range(2)
        ]
        raw += hostile(user, 100, tenant=tenant)  # duplicates of their first 100
    for event in raw:  # recent: within the TTL, except for u5 (expired on arrival)
        shift = timedelta(days=40) if event["userId"] == "u5" else timedelta(0)
        event["timestamp"] = (now - timedelta(hours=2) - shift + (
            datetime.fromisoformat(event["timestamp"]) - T0)).isoformat()  # fmt: skip
    messages = [BehaviourEvent.model_validate(e) for e in raw]

    config = FoldConfig.from_settings(settings)
    async with assemble(settings, (Service.usermodel,)):
        await datasets.produce(settings, messages)
        live = UserModelKeys(await Namespaces(redis, settings.redis_namespace).active())
        await eventually(
            lambda: caught_up(settings, EVENTS.name, RedisWatermarks(redis, live)),
            "the live consumer folds every event", within=120,
        )  # fmt: skip
        side = UserModelKeys(f"{settings.redis_namespace}-side")
        await rebuild_namespace(settings, redis, side.namespace)
        live_digest = await digest_namespace(redis, live, config.decay)
        side_digest = await digest_namespace(redis, side, config.decay)

    assert live_digest.counts == side_digest.counts
    assert live_digest.hexdigest() == side_digest.hexdigest()
    u0 = live.user(tenant, "u0")
    assert await redis.hlen(u0.events) == 21  # the cap bit
    assert await redis.hlen(u0.tags) == 60
    assert await redis.hget(u0.state, "events") == b"402"  # the duplicates did not count
    assert await redis.exists(live.user(tenant, "u5").state) == 0


async def test_tags_folded_before_the_cap_come_under_it_with_the_next_tag(redis: Redis) -> None:
    keys = namespace()
    legacy = {f"old{n}": f"{n + 1}:{T0_MS}" for n in range(10)}  # as an older version left it
    await redis.hset(keys.user("acme", "ann").tags, mapping=legacy)
    config = dataclasses.replace(CONFIG, max_tags_per_user=3)
    event = envelope(
        1, "ann", "like", "a", minutes=0, arrival_s=0, message_id="1",
        properties={"tags": ["new"]},
    )  # fmt: skip
    await UserModelFolder(redis, config).fold([event], keys)
    tags = await redis.hgetall(keys.user("acme", "ann").tags)
    assert sorted(tags) == [b"old7", b"old8", b"old9"]  # affinities 8, 9, 10; new is 3
