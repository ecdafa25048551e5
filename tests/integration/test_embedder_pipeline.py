"""The embedder on real parts only: the embedded Tansu broker, the real embedding model,
Qdrant Edge in a temporary folder, producers and readers on raw aiokafka."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.deadletter import DeadLetterRecord
from schemas.topics import CONTENT, DEAD_LETTER, content_key
from services.app.bootstrap import Service, assemble
from services.common.embedding import Embedder
from services.common.kafka import make_broker
from services.common.settings import Settings
from services.common.vectorindex import ItemFilter, ItemWrite, VectorIndex
from services.common.vectorindex.edge import EdgeVectorIndex
from services.embedder import consumer_group, content_router
from tests.polling import eventually

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    loaded = Embedder.from_settings(Settings())
    yield loaded
    loaded.close()


@pytest.fixture
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    """The stack's broker, a consumer group of this test's own, a private index folder."""
    return stack_settings.model_copy(
        update={
            "kafka_group_prefix": f"test-{uuid.uuid4().hex[:8]}",
            "vector_index_path": tmp_path / "vectors",
            "consumer_max_records": 50,
        }
    )


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def index(settings: Settings, embedder: Embedder) -> AsyncIterator[EdgeVectorIndex]:
    engine = EdgeVectorIndex(settings.vector_index_path, embedder.dimension)
    await engine.ensure_ready()
    yield engine
    await engine.close()


def upsert(tenant: str, item_id: str, title: str, description: str, version: int = 1) -> bytes:
    message = {
        "tenant": tenant,
        "item_id": item_id,
        "version": version,
        "updated_at": "2024-05-01T12:00:00Z",
        "title": title,
        "description": description,
        "tags": ["film"],
    }
    return json.dumps(message).encode()


def tombstone(tenant: str, item_id: str, version: int) -> bytes:
    message = {
        "tenant": tenant,
        "item_id": item_id,
        "op": "delete",
        "version": version,
        "updated_at": "2024-05-02T12:00:00Z",
    }
    return json.dumps(message).encode()


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=False,  # Tansu rejects InitProducerId
        acks="all",
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(CONTENT.name, value, key=key)
    finally:
        await producer.stop()


async def top_hit(embedder: Embedder, index: VectorIndex, tenant: str, query: str) -> str | None:
    vector = await embedder.embed_query(query)
    hits = await index.search(vector.tolist(), ItemFilter(tenant), limit=1)
    return hits[0].item.item_id if hits else None


async def read_dead_letters(settings: Settings, keys: set[bytes]) -> dict[bytes, DeadLetterRecord]:
    """Read the dead-letter topic from the start until every key in ``keys`` is seen."""
    reader = AIOKafkaConsumer(
        DEAD_LETTER.name,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    found: dict[bytes, DeadLetterRecord] = {}
    deadline = time.monotonic() + DEADLINE_S
    try:
        while set(found) != keys:
            if time.monotonic() > deadline:
                raise AssertionError(f"dead letters missing: {keys - set(found)}")
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key in keys:
                        found[record.key] = DeadLetterRecord.model_validate_json(record.value)
    finally:
        await reader.stop()
    return found


async def test_content_is_embedded_searchable_deleted_and_bad_input_dead_lettered(
    settings: Settings, embedder: Embedder, index: EdgeVectorIndex, tenant: str
) -> None:
    malformed_key = content_key(tenant, "broken")
    await produce(
        settings,
        [
            (
                content_key(tenant, "alien"),
                upsert(
                    tenant,
                    "alien",
                    "Alien",
                    "The crew of a spaceship is hunted by a deadly extraterrestrial creature.",
                ),
            ),
            (
                content_key(tenant, "cake"),
                upsert(
                    tenant,
                    "cake",
                    "Lemon sponge cake",
                    "A recipe for a light lemon sponge cake with a sugar glaze.",
                ),
            ),
            (
                content_key(tenant, "heat"),
                upsert(
                    tenant,
                    "heat",
                    "Heat",
                    "A detective tracks a crew of professional bank robbers in Los Angeles.",
                ),
            ),
            (malformed_key, b'{"tenant": "' + tenant.encode() + b'", "item_id": '),
        ],
    )
    broker = make_broker(settings)
    broker.include_router(content_router(settings, embedder, index))
    await broker.start()
    try:

        async def three_items_searchable() -> bool:
            return (
                await index.count(tenant) == 3
                and await top_hit(embedder, index, tenant, "a monster aboard a space ship")
                == "alien"
                and await top_hit(embedder, index, tenant, "baking a dessert") == "cake"
            )

        await eventually(
            three_items_searchable, "the three items are searchable", within=DEADLINE_S
        )
        letters = await read_dead_letters(settings, {malformed_key})
        letter = letters[malformed_key]
        assert letter.reason == "invalid_json"
        assert letter.topic == CONTENT.name
        assert letter.consumer == consumer_group(settings)
        assert letter.value.startswith(b'{"tenant"')

        # The consumer goes on after the malformed message: a tombstone and a new item.
        await produce(
            settings,
            [
                (content_key(tenant, "heat"), tombstone(tenant, "heat", 2)),
                (
                    content_key(tenant, "tea"),
                    upsert(tenant, "tea", "Green tea", "How to brew green tea leaves."),
                ),
            ],
        )

        async def heat_gone_tea_found() -> bool:
            return (
                await index.retrieve(tenant, ["heat"]) == []
                and await top_hit(embedder, index, tenant, "a cup of hot tea") == "tea"
            )

        await eventually(
            heat_gone_tea_found, "heat is deleted and tea is searchable", within=DEADLINE_S
        )
        assert await index.count(tenant) == 3
        [alien] = await index.retrieve(tenant, ["alien"])
        assert alien.payload["title"] == "Alien"
        assert alien.payload["tags"] == ["film"]
        assert alien.payload["description"].startswith("The crew of a spaceship")
    finally:
        await broker.stop()


async def test_the_embedder_process_serves_health_and_metrics_and_stores_content(
    settings: Settings, tenant: str
) -> None:
    """What `attune run embedder` builds: the consumer plus /healthz, /readyz, /metrics."""
    async with assemble(settings, (Service.embedder,)) as assembly:
        transport = httpx.ASGITransport(app=assembly.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://embedder") as client:
            health = await client.get("/healthz")
            assert health.status_code == 200
            assert health.json() == {"status": "ok", "service": "embedder"}

            metric = "attune_embedder_docs_embedded_total"
            before = _metric((await client.get("/metrics")).text, metric)
            await produce(
                settings,
                [(content_key(tenant, "m1"), upsert(tenant, "m1", "Alien", "A space horror."))],
            )

            async def embedded() -> bool:  # m1 itself (the topic may hold others first)
                assert assembly.deps.vector_index is not None
                return bool(await assembly.deps.vector_index.retrieve(tenant, ["m1"]))

            await eventually(embedded, "the process embeds the upsert", within=DEADLINE_S)
            assert _metric((await client.get("/metrics")).text, metric) > before
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"kafka": "ok", "vector_index": "ok"}
            metrics = (await client.get("/metrics")).text
            assert "attune_consumer_batch_duration_seconds_bucket" in metrics
            assert "attune_consumer_messages_total" in metrics

    # The index was closed at shutdown: the folder opens again, with the item in it.
    reopened = EdgeVectorIndex(settings.vector_index_path, 384)
    await reopened.ensure_ready()
    try:
        [stored] = await reopened.retrieve(tenant, ["m1"])
        assert stored.payload["title"] == "Alien"
    finally:
        await reopened.close()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class FailingOnce:
    """A real index whose first write fails with an unexpected error."""

    def __init__(self, index: EdgeVectorIndex) -> None:
        self.index, self.dimension, self.failures = index, index.dimension, 0

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        if self.failures == 0:
            self.failures += 1
            raise RuntimeError("the index broke once")
        await self.index.apply(writes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.index, name)


async def test_a_batch_that_fails_is_redelivered_and_then_stored(
    settings: Settings, embedder: Embedder, index: EdgeVectorIndex, tenant: str
) -> None:
    flaky = FailingOnce(index)
    broker = make_broker(settings)
    broker.include_router(content_router(settings, embedder, flaky))  # type: ignore[arg-type]
    await produce(
        settings, [(content_key(tenant, "m1"), upsert(tenant, "m1", "Alien", "A space horror."))]
    )
    await broker.start()
    try:

        async def stored() -> bool:
            return await index.count(tenant) == 1

        await eventually(stored, "the redelivered batch is stored", within=DEADLINE_S)
        assert flaky.failures == 1
    finally:
        await broker.stop()
