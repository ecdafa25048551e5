"""Ingest's record batches on the embedded broker: every message where aiokafka's own
``send`` puts its key, in order, and a message over the producer's limit refused
before anything of its request is sent."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker

from schemas.topics import EVENTS
from services.common.kafka import aiokafka_options, make_broker
from services.common.settings import Settings
from services.ingest.messages import Outgoing
from services.ingest.publish import MessageTooLarge, bare_producer, publish_all

pytestmark = pytest.mark.integration


@pytest.fixture
async def broker(stack_settings: Settings) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(stack_settings, logger=None)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


def producer_of(broker: KafkaBroker) -> AIOKafkaProducer:
    producer = bare_producer(broker)
    assert producer is not None
    return producer


def outgoing(key: str, id: str, size: int = 200) -> Outgoing:
    return Outgoing(EVENTS.name, key.encode(), id.encode().ljust(size, b" "), id, f"events.{id}")


async def read(
    settings: Settings, keys: Iterable[bytes], count: int, timeout_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records with one of ``keys`` on the events topic, in offset
    order per partition."""
    wanted, found = set(keys), []
    consumer = AIOKafkaConsumer(
        **aiokafka_options(settings), enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(EVENTS.name, p) for p in range(EVENTS.partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while len(found) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} records arrived"
            batches = await consumer.getmany(timeout_ms=500)
            found += [r for records in batches.values() for r in records if r.key in wanted]
    finally:
        await consumer.stop()
    return found


async def test_batches_put_each_key_where_send_puts_it_in_order(
    broker: KafkaBroker, stack_settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    keys = [f"t-{run}/u-{n}" for n in range(12)]
    # Interleaved keys, and 8 KB messages among small ones: several batches per partition.
    messages = [
        outgoing(keys[n % len(keys)], f"{run}-{n}", 8_000 if n % 7 == 0 else 200)
        for n in range(240)
    ]
    await publish_all(broker, messages, timeout_s=30)
    # A probe per key through aiokafka's own send: the partition it chooses.
    producer = producer_of(broker)
    probes = [await producer.send(EVENTS.name, b"probe", key=key.encode()) for key in keys]
    probed = {
        key.encode(): (await probe).partition for key, probe in zip(keys, probes, strict=True)
    }

    records = await read(stack_settings, probed, len(messages) + len(keys))
    sent = [r for r in records if r.value != b"probe"]
    assert sorted(r.value.strip() for r in sent) == sorted(m.value.strip() for m in messages)
    assert all(r.partition == probed[r.key] for r in records)
    assert all(dict(r.headers)["content-type"] == b"application/json" for r in sent)
    for key in probed:  # each key's messages in the order they were given
        arrived = [r.value.strip() for r in sent if r.key == key]
        assert arrived == [m.value.strip() for m in messages if m.key == key]


async def test_a_message_over_the_producers_limit_is_refused_before_sending(
    broker: KafkaBroker, stack_settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    key = f"t-{run}/u"
    messages = [outgoing(key, f"{run}-0"), outgoing(key, f"{run}-1", 2_000_000)]
    with pytest.raises(MessageTooLarge) as raised:
        await publish_all(broker, messages, timeout_s=10)
    assert raised.value.message.field == f"events.{run}-1"

    # Nothing of that request was sent: the next message is the key's first record.
    await publish_all(broker, [outgoing(key, f"{run}-2")], timeout_s=10)
    [first] = await read(stack_settings, [key.encode()], 1)
    assert first.value.strip() == f"{run}-2".encode()
