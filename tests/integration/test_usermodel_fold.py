"""The fold scripts on a real Redis: strengths, decay, trending, co-occurrence and the
exactly-once guards."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.events import BehaviourEvent
from services.app.embedded import EmbeddedStack
from services.common.records import Envelope
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.read import UserModelReader
from services.usermodel.fold import FoldConfig, UserModelFolder, fold_input

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
CONFIG = FoldConfig(
    event_weights={"view": 1.0, "like": 3.0, "dislike": -3.0},
    rating_weight=2.0,
    rating_prior_mean=3.0,
    rating_prior_count=0.0,
    recent_items_limit=5,
    tag_half_life_days=1.0,
    trending_half_life_days=1.0,
    popularity_half_life_days=0.0,  # all-time sums, exact to compare across redeliveries
    cooccurrence_window=3,
)


@pytest.fixture
async def redis(stack: EmbeddedStack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> UserModelKeys:
    return UserModelKeys(namespace=f"test-{uuid.uuid4().hex[:8]}")


class Events:
    """Builds envelopes with increasing offsets, as one partition would deliver them."""

    def __init__(self, partition: int = 0) -> None:
        self.partition, self.offset = partition, 0

    def __call__(
        self, user: str, event: str, item: str | None = None, *, minutes: float = 0,
        tenant: str = "acme", message_id: str | None = None, **properties: Any,
    ) -> Envelope[BehaviourEvent]:  # fmt: skip
        self.offset += 1
        payload = {
            "tenant": tenant, "event": event, "userId": user,
            "messageId": message_id or f"m-{self.partition}-{self.offset}",
            "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
            "properties": {"item_id": item, **properties},
        }  # fmt: skip
        return Envelope(
            message=BehaviourEvent.model_validate(payload),
            topic="attune.events", partition=self.partition, offset=self.offset,
            key=None, timestamp_ms=0,
        )  # fmt: skip


async def test_strength_counts_and_recency(redis: Redis, keys: UserModelKeys) -> None:
    ev = Events()
    folder = UserModelFolder(redis, CONFIG)
    await folder.fold(
        [
            ev("ann", "view", "a", minutes=1, tags=["space"]),
            ev("ann", "like", "a", minutes=2, tags=["space"]),
            ev("ann", "view", "b", minutes=3, tags=["cooking"]),
            ev("ann", "dislike", "c", minutes=4, tags=["cooking"]),
        ],
        keys,
    )

    model = await UserModelReader(redis, keys, CONFIG.decay).user("acme", "ann", now=T0)

    assert model.events == 4
    assert model.event_counts == {"view": 2, "like": 1, "dislike": 1}
    assert [(i.item_id, i.strength) for i in model.recent] == [("c", -3.0), ("b", 1.0), ("a", 4.0)]
    assert model.recent[0].last_seen == T0 + timedelta(minutes=4)
    assert model.tag_affinity["space"] == pytest.approx(4.0, rel=1e-3)
    assert model.tag_affinity["cooking"] == pytest.approx(-2.0, rel=1e-3)
    assert model.first_seen == T0 + timedelta(minutes=1)


async def test_tag_affinity_decays_with_its_half_life(redis: Redis, keys: UserModelKeys) -> None:
    ev = Events()
    folder = UserModelFolder(redis, CONFIG)
    await folder.fold([ev("ann", "like", "a", tags=["jazz"])], keys)
    await folder.fold([ev("ann", "like", "b", minutes=24 * 60, tags=["jazz"])], keys)  # a day later

    reader = UserModelReader(redis, keys, CONFIG.decay)
    now = T0 + timedelta(days=1)
    assert (await reader.user("acme", "ann", now=now)).tag_affinity["jazz"] == pytest.approx(4.5)
    later = await reader.user("acme", "ann", now=now + timedelta(days=2))
    assert later.tag_affinity["jazz"] == pytest.approx(4.5 / 4)


async def test_ratings_are_scored_around_the_users_mean(redis: Redis, keys: UserModelKeys) -> None:
    ev = Events()
    await UserModelFolder(redis, CONFIG).fold(
        [
            ev("ann", "rating", "a", rating=4.0),  # mean so far: prior 3.0 (count 0 -> 3.0)
            ev("ann", "rating", "b", rating=2.0),  # mean 4.0
            ev("ann", "rating", "c", rating=5.0),  # mean 3.0
        ],
        keys,
    )
    model = await UserModelReader(redis, keys, CONFIG.decay).user("acme", "ann", now=T0)
    strengths = {i.item_id: i.strength for i in model.recent}
    assert strengths == {"a": pytest.approx(2.0), "b": pytest.approx(-4.0), "c": pytest.approx(4.0)}
    assert model.mean_rating == pytest.approx(11 / 3)


async def test_recent_items_are_bounded(redis: Redis, keys: UserModelKeys) -> None:
    ev = Events()
    await UserModelFolder(redis, CONFIG).fold(
        [ev("ann", "view", f"i{n}", minutes=n) for n in range(8)], keys
    )
    model = await UserModelReader(redis, keys, CONFIG.decay).user("acme", "ann", now=T0)
    assert [i.item_id for i in model.recent] == ["i7", "i6", "i5", "i4", "i3"]
    assert await redis.hlen(keys.user("acme", "ann").strength) == 5


async def test_redelivery_and_duplicate_message_ids_change_nothing(
    redis: Redis, keys: UserModelKeys
) -> None:
    ev = Events()
    batch = [ev("ann", "like", "a"), ev("bob", "like", "a"), ev("bob", "like", "b", minutes=1)]
    folder = UserModelFolder(redis, CONFIG)
    await folder.fold(batch, keys)
    before = await _snapshot(redis, keys)

    await folder.fold(batch, keys)  # the same offsets again: a redelivery
    duplicate = ev("ann", "like", "a", message_id=batch[0].message.message_id)
    await folder.fold([duplicate], keys)  # a producer's duplicate, at a new offset

    assert await _snapshot(redis, keys) == before
    reader = UserModelReader(redis, keys, CONFIG.decay)
    assert (await reader.user("acme", "ann", now=T0)).events == 1
    assert await reader.popular("acme", 10) == [("a", 6.0), ("b", 3.0)]


async def test_trending_cooccurrence_and_popularity(redis: Redis, keys: UserModelKeys) -> None:
    ev = Events()
    await UserModelFolder(redis, CONFIG).fold(
        [
            ev("ann", "like", "a"), ev("ann", "like", "b", minutes=1),
            ev("bob", "like", "a", minutes=2), ev("bob", "like", "b", minutes=3),
            ev("bob", "like", "c", minutes=4), ev("cy", "dislike", "c", minutes=5),
        ], keys)  # fmt: skip
    reader = UserModelReader(redis, keys, CONFIG.decay)

    co = await reader.cooccurring("acme", ["a", "c"], limit=10)
    assert co["a"] == [("b", 2.0), ("c", 1.0)]
    assert sorted(co["c"]) == [("a", 1.0), ("b", 1.0)]
    trending = await reader.trending("acme", 10, now=T0 + timedelta(minutes=4))
    # b was liked later than a, so it trends a little higher; the dislike of c does not count
    assert [item for item, _ in trending] == ["b", "a", "c"]
    assert trending[0][1] == pytest.approx(6.0, rel=1e-2)
    day_later = await reader.trending("acme", 10, now=T0 + timedelta(days=1, minutes=4))
    assert day_later[0][1] == pytest.approx(trending[0][1] / 2, rel=1e-3)


async def test_trending_survives_rescaling_over_years(redis: Redis, keys: UserModelKeys) -> None:
    ev = Events()
    folder = UserModelFolder(redis, CONFIG)
    await folder.fold([ev("ann", "like", "old")], keys)
    await folder.fold([ev("bob", "like", "new", minutes=365 * 24 * 60)], keys)  # 365 half-lives
    trending = await UserModelReader(redis, keys, CONFIG.decay).trending(
        "acme", 10, now=T0 + timedelta(days=365)
    )
    assert trending[0] == ("new", pytest.approx(3.0))
    assert trending[1][1] < 1e-100


async def test_popularity_decays_with_its_half_life(redis: Redis, keys: UserModelKeys) -> None:
    config = dataclasses.replace(CONFIG, popularity_half_life_days=1.0)
    ev = Events()
    await UserModelFolder(redis, config).fold(
        [
            ev("ann", "like", "a"), ev("bob", "like", "a"), ev("cy", "like", "a"),
            ev("dan", "like", "b", minutes=24 * 60),
        ], keys)  # fmt: skip
    a_day_later = UserModelReader(redis, keys, config.decay, clock=lambda: T0 + timedelta(days=1))
    # three likes of a, a day old, weigh as much as 1.5 fresh ones; b's like is fresh
    assert await a_day_later.popular("acme", 10) == [
        ("a", pytest.approx(4.5)),
        ("b", pytest.approx(3.0)),
    ]
    two_days_later = await a_day_later.popular("acme", 10, now=T0 + timedelta(days=2))
    assert two_days_later == [("a", pytest.approx(2.25)), ("b", pytest.approx(1.5))]


async def test_a_crash_before_the_tenant_step_is_repaired_by_redelivery(
    redis: Redis, keys: UserModelKeys
) -> None:
    ev = Events()
    batch = [ev("ann", "like", "a"), ev("ann", "like", "b", minutes=1)]
    folder = UserModelFolder(redis, CONFIG)
    # Only the user step ran (as if the process died right after it).
    await folder._fold_user(
        keys=keys.user("acme", "ann").for_fold(),
        args=[CONFIG.user_script_config(), json.dumps([fold_input(e, CONFIG) for e in batch])],
    )
    assert await UserModelReader(redis, keys, CONFIG.decay).popular("acme", 10) == []

    await folder.fold(batch, keys)  # the redelivery

    reader = UserModelReader(redis, keys, CONFIG.decay)
    assert sorted(await reader.popular("acme", 10)) == [("a", 3.0), ("b", 3.0)]
    assert (await reader.cooccurring("acme", ["a"], 10))["a"] == [("b", 1.0)]
    assert await redis.llen(keys.user("acme", "ann").outbox) == 0
    await folder.fold(batch, keys)
    assert sorted(await reader.popular("acme", 10)) == [("a", 3.0), ("b", 3.0)]


async def test_an_outbox_left_by_the_two_letter_key_version_is_applied(
    redis: Redis, keys: UserModelKeys
) -> None:
    """An upgrade after a crash between the user step and the tenant step: the outbox
    holds updates in the format the fold scripts wrote before they named their keys."""
    ev = Events()
    batch = [ev("ann", "like", "a"), ev("ann", "like", "b", minutes=1)]
    folder = UserModelFolder(redis, CONFIG)
    await folder._fold_user(
        keys=keys.user("acme", "ann").for_fold(),
        args=[CONFIG.user_script_config(), json.dumps([fold_input(e, CONFIG) for e in batch])],
    )
    outbox = keys.user("acme", "ann").outbox
    written = [json.loads(entry) for entry in await redis.lrange(outbox, 0, -1)]
    short = {"partition": "p", "offset": "o", "item_id": "it", "strength": "s",
             "time_ms": "t", "pairs": "co"}  # fmt: skip
    await redis.delete(outbox)
    await redis.rpush(outbox, *(json.dumps({short[k]: v for k, v in e.items()}) for e in written))

    await folder.fold(batch, keys)  # the redelivery, by the new version

    reader = UserModelReader(redis, keys, CONFIG.decay)
    assert sorted(await reader.popular("acme", 10)) == [("a", 3.0), ("b", 3.0)]
    assert (await reader.cooccurring("acme", ["a"], 10))["a"] == [("b", 1.0)]
    assert await redis.llen(outbox) == 0


async def test_tenants_are_kept_apart(redis: Redis, keys: UserModelKeys) -> None:
    ev = Events()
    await UserModelFolder(redis, CONFIG).fold(
        [ev("ann", "like", "a", tenant="t1"), ev("ann", "like", "b", tenant="t2")], keys
    )
    reader = UserModelReader(redis, keys, CONFIG.decay)
    assert [i.item_id for i in (await reader.user("t1", "ann", now=T0)).recent] == ["a"]
    assert await reader.popular("t2", 10) == [("b", 3.0)]


async def _snapshot(redis: Redis, keys: UserModelKeys) -> dict[bytes, object]:
    """Every key's content, leaving out the applied-offset bookkeeping."""
    snapshot: dict[bytes, object] = {}
    async for key in redis.scan_iter(match=keys.pattern()):
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            fields = await redis.hgetall(key)
            snapshot[key] = {k: v for k, v in fields.items() if not k.startswith(b"offset:")}
        elif kind == "zset":
            snapshot[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            snapshot[key] = await redis.lrange(key, 0, -1)
    return snapshot


async def test_an_outbox_left_ahead_by_a_crash_does_not_hide_other_users_updates(
    redis: Redis, keys: UserModelKeys
) -> None:
    """A crashed attempt folded bob's later event; the retry comes in smaller batches, so
    bob's update reaches the tenant step before ann's earlier one. Both must count."""
    ev = Events()
    ann, bob = ev("ann", "like", "a"), ev("bob", "like", "b")  # offsets 1 and 2
    folder = UserModelFolder(redis, CONFIG)
    await folder._fold_user(
        keys=keys.user("acme", "bob").for_fold(),
        args=[CONFIG.user_script_config(), json.dumps([fold_input(bob, CONFIG)])],
    )

    await folder.fold([bob], keys)  # the retry's first batch carries bob's outbox
    await folder.fold([ann], keys)  # ann's update, at a lower offset, comes after

    reader = UserModelReader(redis, keys, CONFIG.decay)
    assert sorted(await reader.popular("acme", 10)) == [("a", 3.0), ("b", 3.0)]


async def test_an_event_from_a_clock_years_ahead_is_folded_at_its_record_time(
    redis: Redis, keys: UserModelKeys
) -> None:
    """Written to Kafka by a producer that bypassed ingest: the fold counts it at its
    record's time plus the allowed skew, so trending keeps decaying as of now."""
    ev = Events()
    ahead = ev("ann", "like", "a", minutes=60 * 24 * 365 * 25)  # T0 + 25 years
    recorded_ms = int(T0.timestamp() * 1000)
    ahead = dataclasses.replace(ahead, timestamp_ms=recorded_ms)
    config = dataclasses.replace(CONFIG, max_clock_skew_ms=60_000)
    await UserModelFolder(redis, config).fold([ahead, ev("bob", "like", "b")], keys)

    reader = UserModelReader(redis, keys, config.decay)
    model = await reader.user("acme", "ann", now=T0)
    assert model.last_seen == T0 + timedelta(minutes=1)
    trending = await reader.trending("acme", 10, now=T0)
    assert [item for item, _ in trending] == ["a", "b"]
    assert all(math.isfinite(score) and score > 0 for _, score in trending)


async def test_a_landmark_years_ahead_never_overflows_a_read(
    redis: Redis, keys: UserModelKeys
) -> None:
    """State folded before event times were bounded: a tenant's trending landmark in
    2050. Reading it must neither raise nor give infinite scores."""
    tenant = keys.tenant("acme")
    await redis.zadd(tenant.trending, {"a": 3.0, "b": 1.0})
    await redis.zadd(tenant.popular, {"a": 3.0, "b": 1.0})
    landmark = datetime(2050, 1, 1, tzinfo=UTC).timestamp() * 1000
    await redis.hset(
        tenant.meta, mapping={"trending_landmark_ms": landmark, "popular_landmark_ms": landmark}
    )
    reader = UserModelReader(redis, keys, CONFIG.decay)
    for ranked in (await reader.trending("acme", 10, now=T0), await reader.popular("acme", 10)):
        assert [item for item, _ in ranked] == ["a", "b"]
        assert all(math.isfinite(score) for _, score in ranked)


async def test_traits_holding_integers_beyond_64_bits_are_folded(
    redis: Redis, keys: UserModelKeys
) -> None:
    identify = BehaviourEvent.model_validate({
        "tenant": "acme", "type": "identify", "userId": "ann", "messageId": "id-1",
        "timestamp": T0.isoformat(),
        "traits": {"plan": "pro", "seats": 2**70, "ids": [10**400, 7], "org": {"id": -(2**64)}},
    })  # fmt: skip
    envelope = Envelope(
        message=identify, topic="attune.events", partition=0, offset=1, key=None, timestamp_ms=0
    )
    await UserModelFolder(redis, CONFIG).fold([envelope], keys)

    model = await UserModelReader(redis, keys, CONFIG.decay).user("acme", "ann", now=T0)
    assert model.events == 1
    assert model.traits == {  # Lua's numbers are doubles
        "plan": "pro",
        "seats": pytest.approx(2.0**70, rel=1e-12),
        "ids": [str(10**400), 7],
        "org": {"id": pytest.approx(-(2.0**64), rel=1e-12)},
    }
