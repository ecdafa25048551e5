"""Bulk loading into Kafka: content and behaviour messages to their topics, fast.

One raw aiokafka producer (acks=all) is fed whole record batches: the records of a
chunk are grouped by partition (the same murmur2 partitioner as ``send()`` and every
Java client, so a key lands where any other producer would put it), packed into
batches of ``max_batch_size`` bytes and queued with ``send_batch()``. One future per
batch instead of one per record, and the next chunk is queued while the previous one
is being acknowledged: the Python client, not the broker, sets the pace.

Delivery is at least once. A failed batch is sent again (Tansu's first produce after
a start can fail once with UnknownError), so a retried message can arrive twice or
after later ones; consumers deduplicate by messageId and apply content by version,
so neither changes the outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Sized
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeAlias

from schemas.content import ContentTombstone, ContentUpsert
from schemas.events import BehaviourEvent
from schemas.topics import CONTENT, EVENTS, content_key, events_key
from services.common.settings import Settings

if TYPE_CHECKING:  # aiokafka (and FastStream behind services.common.kafka) load on first use
    from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

Message: TypeAlias = ContentUpsert | ContentTombstone | BehaviourEvent
Progress: TypeAlias = Callable[[int, int | None], None]
"""Called with (messages acknowledged so far, total or None when unknown)."""

Record: TypeAlias = tuple[str, bytes, bytes]  # topic, key, value
_Sent: TypeAlias = list[tuple["asyncio.Future[Any] | None", list[Record]]]


class ProduceError(RuntimeError):
    """Messages were still not acknowledged after every retry, or one cannot be sent."""


def route(message: Message) -> tuple[str, bytes]:
    """The topic and key a message travels on (see ``schemas.topics``)."""
    if isinstance(message, BehaviourEvent):
        return EVENTS.name, events_key(message.tenant, message.user_key)
    if isinstance(message, ContentUpsert | ContentTombstone):
        return CONTENT.name, content_key(message.tenant, message.item_id)
    raise TypeError(f"cannot route a {type(message).__name__}")


def to_record(message: Message) -> Record:
    """(topic, key, JSON value); events are serialized with their Segment field names."""
    topic, key = route(message)
    return topic, key, message.model_dump_json().encode()


class _Loader:
    def __init__(self, producer: AIOKafkaProducer, retries: int, backoff_s: float) -> None:
        self.producer = producer
        self.retries = retries
        self.backoff_s = backoff_s
        self._partitions: dict[str, list[int]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}

    async def _partition(self, topic: str, key: bytes) -> int:
        cached = self._partition_of.get((topic, key))
        if cached is not None:
            return cached
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        from aiokafka.partitioner import murmur2

        # aiokafka's DefaultPartitioner, i.e. the Java client's for keyed records.
        partition: int = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        self._partition_of[(topic, key)] = partition
        return partition

    async def _queue_partition(self, topic: str, partition: int, records: list[Record]) -> _Sent:
        from aiokafka.errors import KafkaError

        sent: _Sent = []
        queued = 0
        batch = self.producer.create_batch()
        members: list[Record] = []
        try:
            for record in records:
                while batch.append(key=record[1], value=record[2], timestamp=None) is None:
                    if not members:  # even an empty batch cannot take it
                        raise ProduceError(f"a {len(record[2])}-byte message exceeds the batch")
                    future = await self.producer.send_batch(batch, topic, partition=partition)
                    sent.append((future, members))
                    queued += len(members)
                    batch, members = self.producer.create_batch(), []
                members.append(record)
            if members:
                future = await self.producer.send_batch(batch, topic, partition=partition)
                sent.append((future, members))
        except KafkaError as error:  # could not even queue: retried like a failed batch
            log.warning("queueing to %s[%d] failed: %r", topic, partition, error)
            sent.append((None, records[queued:]))
        return sent

    async def queue(self, records: list[Record]) -> _Sent:
        """Queue every record in partition batches; one (future, records) per batch."""
        groups: dict[tuple[str, int], list[Record]] = {}
        for record in records:
            partition = await self._partition(record[0], record[1])
            groups.setdefault((record[0], partition), []).append(record)
        per_partition = await asyncio.gather(
            *(self._queue_partition(topic, p, group) for (topic, p), group in groups.items())
        )
        return [entry for sent in per_partition for entry in sent]

    async def settle(self, sent: _Sent) -> int:
        """Wait for the acks; send failed batches again. Return the records acknowledged."""
        from aiokafka.errors import KafkaError

        for attempt in range(self.retries + 1):
            futures = [future for future, _ in sent if future is not None]
            outcomes = iter(await asyncio.gather(*futures, return_exceptions=True))
            failed: list[Record] = []
            errors: list[BaseException] = []
            for future, records in sent:
                outcome = None if future is None else next(outcomes)
                if isinstance(outcome, BaseException) and not isinstance(outcome, KafkaError):
                    raise outcome
                if future is None or isinstance(outcome, KafkaError):
                    failed.extend(records)
                    if outcome is not None:
                        errors.append(outcome)
            if not failed:
                return sum(len(records) for _, records in sent)
            if attempt == self.retries:
                break
            log.warning("%d messages not acknowledged (%r); retrying", len(failed), errors[:1])
            await asyncio.sleep(self.backoff_s * 2**attempt)
            sent = await self.queue(failed)
        raise ProduceError(f"{len(failed)} messages not acknowledged after {self.retries} retries")


def _chunks(messages: Iterable[Message], size: int) -> Iterator[list[Record]]:
    iterator = iter(messages)
    while chunk := [to_record(message) for message in islice(iterator, size)]:
        yield chunk


async def produce(
    settings: Settings,
    messages: Iterable[Message],
    *,
    total: int | None = None,
    progress: Progress | None = None,
    chunk_size: int = 10_000,
    linger_ms: int = 10,
    max_batch_size: int = 512 * 1024,
    retries: int = 5,
    backoff_s: float = 0.2,
) -> int:
    """Publish content items and behaviour events to their topics (keyed as the contract
    says) and return how many were acknowledged. ``messages`` may be any iterable (a
    generator is consumed a chunk at a time); ``total`` defaults to its ``len()`` when it
    has one and only feeds ``progress``. Raises ProduceError when a message is still not
    acknowledged after ``retries`` retries."""
    from aiokafka import AIOKafkaProducer

    from services.common.kafka import aiokafka_options

    if total is None and isinstance(messages, Sized):
        total = len(messages)
    producer = AIOKafkaProducer(
        **aiokafka_options(settings),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
        max_request_size=max(max_batch_size, settings.max_message_bytes) + 64 * 1024,
        request_timeout_ms=max(40_000, settings.kafka_session_timeout_ms),
    )
    await producer.start()
    try:
        loader = _Loader(producer, retries, backoff_s)
        chunks = _chunks(messages, chunk_size)
        first = next(chunks, None)
        if first is None:
            return 0
        # One record alone first: a fresh broker's one-off failure costs one retry.
        done = await loader.settle(await loader.queue(first[:1]))
        previous = await loader.queue(first[1:])
        for chunk in chunks:
            queued = await loader.queue(chunk)  # while the previous chunk is acknowledged
            done += await loader.settle(previous)
            if progress is not None:
                progress(done, total)
            previous = queued
        done += await loader.settle(previous)
        if progress is not None:
            progress(done, total)
        return done
    finally:
        await producer.stop()


__all__ = ["Message", "ProduceError", "Progress", "produce", "route", "to_record"]
