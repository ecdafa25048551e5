"""The bulk loader against the real embedded broker: everything arrives, on the right
topic, under the right key, on the partition any other producer would choose."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from schemas import CONTENT, EVENTS, content_key, events_key
from services.app.datasets import Message, demo_events, demo_items, produce
from services.common.kafka import aiokafka_options
from services.common.settings import Settings

pytestmark = pytest.mark.integration

NOW = datetime(2025, 6, 1, tzinfo=UTC)


async def _read_tenant(
    settings: Settings, tenant: str, expected: int, *, within_s: float = 60.0
) -> list[tuple[str, int, bytes, dict[str, object]]]:
    """(topic, partition, key, value) of every record of ``tenant`` on the content and
    events topics, read from the beginning by a fresh consumer group until ``expected``
    distinct ones came back or the deadline passed."""
    consumer = AIOKafkaConsumer(
        CONTENT.name,
        EVENTS.name,
        **aiokafka_options(settings),
        group_id=f"datasets-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=1_000,
    )
    await consumer.start()
    prefix = f"{tenant}/".encode()
    records: list[tuple[str, int, bytes, dict[str, object]]] = []
    seen: set[tuple[str, bytes, str]] = set()
    deadline = time.monotonic() + within_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
            for tp, batch in batches.items():
                for record in batch:
                    if record.key is None or not record.key.startswith(prefix):
                        continue
                    value = json.loads(record.value)
                    identity = str(value.get("messageId") or value.get("item_id"))
                    if (tp.topic, record.key, identity) not in seen:
                        seen.add((tp.topic, record.key, identity))
                        records.append((tp.topic, tp.partition, record.key, value))
    finally:
        await consumer.stop()
    return records


async def test_produce_delivers_the_demo_set_to_its_topics_and_keys(
    stack_settings: Settings,
) -> None:
    tenant = f"ds-{uuid.uuid4().hex[:8]}"
    items = demo_items(tenant)
    events = demo_events(NOW, tenant)
    messages: list[Message] = [*items, *events]
    calls: list[tuple[int, int | None]] = []

    sent = await produce(
        stack_settings, messages, progress=lambda done, total: calls.append((done, total))
    )

    assert sent == len(messages)
    assert calls[-1] == (len(messages), len(messages))
    records = await _read_tenant(stack_settings, tenant, len(messages))
    per_topic = Counter(topic for topic, *_ in records)
    assert per_topic == {CONTENT.name: len(items), EVENTS.name: len(events)}

    item_keys = {content_key(tenant, item.item_id) for item in items}
    user_events = Counter(events_key(tenant, event.user_key) for event in events)
    partitioner = DefaultPartitioner()
    for topic, partition, key, value in records:
        if topic == CONTENT.name:
            assert key in item_keys
            assert key == content_key(tenant, str(value["item_id"]))
            partitions = list(range(CONTENT.partitions))
        else:
            assert key == events_key(tenant, str(value["userId"]))
            assert str(value["messageId"]).startswith("demo-")
            partitions = list(range(EVENTS.partitions))
        assert partition == partitioner(key, partitions, partitions)
    assert Counter(key for topic, _, key, _ in records if topic == EVENTS.name) == user_events

    # Each user's events arrive in the order they happened (one key, one partition).
    by_user: dict[bytes, list[datetime]] = {}
    for topic, _, key, value in records:
        if topic == EVENTS.name:
            by_user.setdefault(key, []).append(datetime.fromisoformat(str(value["timestamp"])))
    for timestamps in by_user.values():
        assert timestamps == sorted(timestamps)


async def test_produce_takes_a_generator_of_unknown_length(stack_settings: Settings) -> None:
    tenant = f"ds-{uuid.uuid4().hex[:8]}"
    calls: list[tuple[int, int | None]] = []

    def generate() -> Iterator[Message]:
        yield from demo_items(tenant)[:25]

    sent = await produce(
        stack_settings,
        generate(),
        chunk_size=10,
        progress=lambda done, total: calls.append((done, total)),
    )

    assert sent == 25
    assert calls == [(10, None), (20, None), (25, None)]
    records = await _read_tenant(stack_settings, tenant, 25)
    assert len(records) == 25


async def test_produce_of_nothing_sends_nothing(stack_settings: Settings) -> None:
    assert await produce(stack_settings, []) == 0
