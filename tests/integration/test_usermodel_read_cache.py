"""The query side's short-lived memo of a tenant's trending and popular lists, on a real
Redis: reused within its time to live, decayed at each call, read again when deeper."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from services.app.embedded import EmbeddedStack
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.read import UserModelReader
from services.usermodel.fold import FoldConfig

pytestmark = pytest.mark.integration

CONFIG = FoldConfig(
    event_weights={"like": 3.0},
    rating_weight=2.0,
    rating_prior_mean=3.0,
    rating_prior_count=0.0,
    recent_items_limit=5,
    tag_half_life_days=1.0,
    trending_half_life_days=1.0,
    cooccurrence_window=3,
)
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
async def redis(stack: EmbeddedStack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> UserModelKeys:
    return UserModelKeys(namespace=f"test-{uuid.uuid4().hex[:8]}")


async def test_lists_are_reused_within_their_time_to_live(
    redis: Redis, keys: UserModelKeys
) -> None:
    tenant = keys.tenant("acme")
    await redis.zadd(tenant.popular, {"a": 6.0, "b": 3.0})
    await redis.zadd(tenant.trending, {"a": 2.0})
    await redis.hset(tenant.meta, "trending_landmark_ms", T0.timestamp() * 1000)
    cached = UserModelReader(redis, keys, CONFIG.decay, ranked_cache_s=60.0)
    fresh = UserModelReader(redis, keys, CONFIG.decay)
    assert await cached.popular("acme", 10) == [("a", 6.0), ("b", 3.0)]
    now = await cached.trending("acme", 10, now=T0)

    await redis.zadd(tenant.popular, {"c": 9.0})

    assert await cached.popular("acme", 1) == [("a", 6.0)]  # within the list read
    assert (await fresh.popular("acme", 10))[0] == ("c", 9.0)
    day_later = await cached.trending("acme", 10, now=T0 + timedelta(days=1))
    assert day_later[0][1] == pytest.approx(now[0][1] / 2, rel=1e-3)  # decayed at each call


async def test_a_deeper_or_older_list_is_read_again(redis: Redis, keys: UserModelKeys) -> None:
    tenant = keys.tenant("acme")
    await redis.zadd(tenant.popular, {f"i{n}": float(n) for n in range(400)})
    cached = UserModelReader(redis, keys, CONFIG.decay, ranked_cache_s=60.0)
    assert len(await cached.popular("acme", 10)) == 10

    await redis.zadd(tenant.popular, {"top": 1_000.0})
    assert len(await cached.popular("acme", 350)) == 350  # deeper than read: read again
    assert (await cached.popular("acme", 1)) == [("top", 1_000.0)]

    expiring = UserModelReader(redis, keys, CONFIG.decay, ranked_cache_s=0.001)
    assert (await expiring.popular("acme", 1)) == [("top", 1_000.0)]
    await redis.zadd(tenant.popular, {"newer": 2_000.0})
    await asyncio.sleep(0.01)
    assert (await expiring.popular("acme", 1)) == [("newer", 2_000.0)]
