"""Routing and serialization of the bulk loader (no broker needed)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import ClassVar

import aiokafka
import pytest
from aiokafka.errors import UnknownError
from aiokafka.partitioner import DefaultPartitioner

from schemas import CONTENT, EVENTS, ContentTombstone, content_key, events_key
from services.app.datasets import (
    ProduceError,
    demo_events,
    demo_items,
    produce,
    route,
    to_record,
)
from services.common.settings import Settings

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def test_items_go_to_the_content_topic_keyed_by_tenant_and_item() -> None:
    item = demo_items("acme")[0]
    tombstone = ContentTombstone(tenant="acme", item_id="x", op="delete", updated_at=NOW)

    assert route(item) == (CONTENT.name, content_key("acme", item.item_id))
    assert route(tombstone) == (CONTENT.name, b"acme/x")
    assert to_record(item)[:2] == route(item)
    value = to_record(item)[2]
    assert json.loads(value)["item_id"] == item.item_id


def test_events_go_to_the_events_topic_keyed_by_user_with_segment_names() -> None:
    event = demo_events(NOW, tenant="acme")[0]
    assert event.user_id is not None

    topic, key, value = to_record(event)

    assert (topic, key) == (EVENTS.name, events_key("acme", event.user_id))
    wire = json.loads(value)
    assert wire["messageId"] == event.message_id
    assert wire["userId"] == event.user_id
    assert "message_id" not in wire


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError):
        route("not a message")  # type: ignore[arg-type]


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    """Stands in for AIOKafkaProducer: the first ``failures`` batches fail with the
    UnknownError Tansu gives right after a start."""

    failures = 1
    instances: ClassVar[list[FakeProducer]] = []

    def __init__(self, **options: object) -> None:
        self.options = options
        self.delivered: list[tuple[str, int, bytes, bytes]] = []
        self.failed_batches = 0
        self.stopped = False
        FakeProducer.instances.append(self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(capacity=4)

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failed_batches < self.failures:
            self.failed_batches += 1
            future.set_exception(UnknownError())
        else:
            self.delivered.extend((topic, partition, k, v) for k, v in batch.records)
            future.set_result(None)
        return future


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.instances.clear()
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", FakeProducer)
    return FakeProducer


async def test_a_failed_first_batch_is_sent_again(fake_producer: type[FakeProducer]) -> None:
    events = demo_events(NOW)[:30]
    settings = Settings(kafka_enable_idempotence=False)

    sent = await produce(settings, events, chunk_size=7, backoff_s=0)

    producer = fake_producer.instances[0]
    assert sent == 30
    assert producer.failed_batches == 1
    assert producer.stopped
    assert producer.options["acks"] == "all"
    assert producer.options["enable_idempotence"] is False
    ids = [json.loads(value)["messageId"] for *_, value in producer.delivered]
    assert sorted(ids) == sorted(event.message_id for event in events)
    partitioner = DefaultPartitioner()
    for _, partition, key, _ in producer.delivered:
        assert partition == partitioner(key, list(range(6)), list(range(6)))


async def test_produce_gives_up_after_its_retries(
    fake_producer: type[FakeProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_producer, "failures", 100)

    with pytest.raises(ProduceError, match="not acknowledged after 2 retries"):
        await produce(Settings(), demo_items()[:3], retries=2, backoff_s=0)
    assert fake_producer.instances[0].stopped
