"""Replay on the real stack: a rebuild from the topics has the live state's digest, and a
switch-over hands the live consumers to the new namespace / collection with nothing
missed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.topics import CONTENT, EVENTS
from services.app import datasets
from services.app.bootstrap import Dependencies, Service, assemble
from services.app.embedded import EmbeddedStack
from services.common.replay import read_topic
from services.common.settings import Settings
from services.common.userstore.digest import digest_namespace
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.namespace import Namespaces, RedisWatermarks
from services.common.vectorindex import open_collections
from services.common.vectorindex.digest import digest_collection
from services.common.vectorindex.watermarks import IndexWatermarks
from services.embedder.replay import rebuild_collection, replay_embedder
from services.usermodel.fold import FoldConfig
from services.usermodel.replay import rebuild_namespace, replay_usermodel
from tests.polling import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack: EmbeddedStack, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return stack.settings().model_copy(
        update={
            "kafka_group_prefix": f"replay-{tag}",
            "redis_namespace": f"replay-{tag}",
            "vector_index_path": tmp_path / "vectors",
        }
    )


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[Dependencies]:
    """The embedder and the user model consuming, as `attune run` runs them."""
    async with assemble(settings, (Service.embedder, Service.usermodel)) as assembly:
        yield assembly.deps


async def topic_ends(settings: Settings, topic: str) -> dict[int, int]:
    def ignore(records: Any) -> Coroutine[Any, Any, None]:
        return asyncio.sleep(0)

    return (await read_topic(settings, topic, ignore)).ends


async def caught_up(settings: Settings, topic: str, store: Any) -> bool:
    ends = await topic_ends(settings, topic)
    marks = await store.load_watermarks()
    return all(end == 0 or (p in marks and marks[p].offset >= end - 1) for p, end in ends.items())


async def produce_demo(settings: Settings, tenant: str, days_ago: int = 0) -> int:
    now = datetime.now(UTC)
    items = datasets.demo_items(tenant)
    events = datasets.demo_events(now, tenant)
    return await datasets.produce(settings, [*items, *events])


async def test_a_rebuild_has_the_live_digest_and_the_switch_hands_over(
    settings: Settings, live: Dependencies
) -> None:
    redis: Redis = live.redis  # type: ignore[assignment]
    assert live.embedder is not None
    assert live.vector_index is not None
    config = FoldConfig.from_settings(settings)
    namespaces = Namespaces(redis, settings.redis_namespace, ttl_s=0)
    tenant = f"r{uuid.uuid4().hex[:6]}"
    await produce_demo(settings, tenant)

    live_keys = UserModelKeys(await namespaces.active())
    await eventually(
        lambda: caught_up(settings, EVENTS.name, RedisWatermarks(redis, live_keys)),
        "the user model reflects the events topic",
        within=90,
    )
    await eventually(
        lambda: caught_up(settings, CONTENT.name, IndexWatermarks(live.vector_index, CONTENT.name)),  # type: ignore[arg-type]
        "the vector index reflects the content topic",
    )

    # A rebuild into a side namespace / collection has the same digest as the live state.
    side = f"{settings.redis_namespace}-side"
    await rebuild_namespace(settings, redis, side)
    live_digest = await digest_namespace(redis, live_keys, config.decay)
    side_digest = await digest_namespace(redis, UserModelKeys(side), config.decay)
    assert live_digest.counts == side_digest.counts
    assert live_digest.hexdigest() == side_digest.hexdigest()

    collections = open_collections(settings, live.embedder.dimension)
    side_index = collections.open("side")
    await side_index.ensure_ready()
    await rebuild_collection(settings, live.embedder, side_index)
    side_vectors = await digest_collection(side_index, settings.embedding_model)
    await side_index.close()
    live_vectors = await digest_collection(live.vector_index, settings.embedding_model)
    assert live_vectors.counts["live"] >= len(datasets.demo_items())
    assert live_vectors.hexdigest() == side_vectors.hexdigest()

    # Replay and switch; then more traffic reaches the new state through the live consumers.
    replayed = await replay_usermodel(settings, redis, drop_previous=True)
    vectors = await replay_embedder(settings, live.embedder, collections, drop_previous=False)
    assert await namespaces.active() == replayed.namespace
    assert await collections.active() == vectors.collection
    assert await redis.exists(live_keys.watermarks) == 0  # the previous namespace is gone

    await produce_demo(settings, f"{tenant}-b")
    new_keys = UserModelKeys(replayed.namespace)
    await eventually(
        lambda: caught_up(settings, EVENTS.name, RedisWatermarks(redis, new_keys)),
        "the live consumer folds into the new namespace",
    )
    await eventually(
        lambda: caught_up(settings, CONTENT.name, IndexWatermarks(live.vector_index, CONTENT.name)),  # type: ignore[arg-type]
        "the live embedder writes into the new collection",
    )
    clean = f"{settings.redis_namespace}-clean"
    await rebuild_namespace(settings, redis, clean)
    assert (await digest_namespace(redis, new_keys, config.decay)).hexdigest() == (
        await digest_namespace(redis, UserModelKeys(clean), config.decay)
    ).hexdigest()
    user = await live.redis.hget(new_keys.user(f"{tenant}-b", "alice").state, "events")  # type: ignore[union-attr]
    assert user is not None
