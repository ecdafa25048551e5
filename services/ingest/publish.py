"""Publishing a request's messages and waiting until the broker has stored all of them.

Every message is handed to the producer first (without waiting), then every
acknowledgement (acks=all) is awaited under one deadline, which is far faster than
publishing one message after another. A message whose send fails is sent once more
while time remains (e.g. the first produce after a broker restart): consumers
deduplicate by messageId and content versions, so a repeat is harmless.

Messages go to aiokafka's producer under the FastStream broker directly when nothing
needs FastStream's publish path: that path (message building, middlewares) costs
about as much per message again as aiokafka's own send. There they go as one record
batch per partition (:func:`send_batches`) rather than one ``send`` each: a request's
messages then cost one future and one queueing per partition instead of per message.
With a publish middleware (tracing on: the producer spans and the trace headers) or
the in-memory test broker, they go through ``broker.publish`` one by one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker

from services.ingest.messages import Outgoing

log = logging.getLogger(__name__)

JSON = "application/json"
HEADERS = [("content-type", JSON.encode())]
HandOver = Callable[[Sequence[Outgoing], list[Any]], Awaitable[None]]
"""Hands messages to the producer, appending each one's ack (a future, or None)."""


class PublishFailed(Exception):
    """The broker has not stored every message: unreachable, failing, or no ack in time.
    Some messages may have been stored (and a timed-out one may still be)."""


class MessageTooLarge(Exception):
    """The producer refuses a message as larger than the broker accepts."""

    def __init__(self, message: Outgoing, reason: str) -> None:
        super().__init__(f"{message.field or 'the message'} ({message.id}) is too large: {reason}")
        self.message = message


async def publish_all(
    broker: KafkaBroker, messages: Sequence[Outgoing], *, timeout_s: float, attempts: int = 2
) -> None:
    """Return once the broker has acknowledged every message; else raise
    :class:`PublishFailed` (or :class:`MessageTooLarge`) within ``timeout_s`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    todo = list(messages)
    for attempt in range(1, max(1, attempts) + 1):
        failures = await _publish_once(broker, todo, deadline)
        if not failures:
            return
        for message, error in failures:
            if isinstance(error, MessageSizeTooLargeError):
                raise MessageTooLarge(message, str(error)) from None
        todo = [message for message, _ in failures]
        if attempt < attempts:
            log.warning("%d send(s) failed (%r); sending them again", len(todo), failures[0][1])
    raise PublishFailed(f"the broker refused {len(todo)} message(s): {failures[0][1]!r}")


async def _publish_once(
    broker: KafkaBroker, messages: Sequence[Outgoing], deadline: float
) -> list[tuple[Outgoing, BaseException]]:
    """Send ``messages``; return those whose send failed, with the error."""
    acks: list[Any] = []
    try:
        async with asyncio.timeout_at(deadline):
            await hand_over(broker)(messages, acks)
    except TimeoutError:
        _forget(acks)
        raise PublishFailed("the broker did not take the messages in time") from None
    except IncorrectState:
        _forget(acks)
        raise PublishFailed("not connected to the broker") from None
    except KafkaError as error:
        _forget(acks)
        raise PublishFailed(f"the producer failed: {error!r}") from error
    except MessageTooLarge:
        _forget(acks)
        raise

    # A real producer answers with futures; the in-memory test broker with nothing.
    futures = [ack for ack in acks if isinstance(ack, asyncio.Future)]
    if futures:
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        _, pending = await asyncio.wait(futures, timeout=remaining)
        if pending:
            _forget(futures)
            late = sum(1 for ack in acks if ack in pending)
            raise PublishFailed(f"{late} message(s) not acknowledged in time")
    failures: list[tuple[Outgoing, BaseException]] = []
    for message, ack in zip(messages, acks, strict=True):
        if isinstance(ack, asyncio.Future) and (failure := ack.exception()) is not None:
            failures.append((message, failure))
    return failures


def hand_over(broker: KafkaBroker) -> HandOver:
    """How to hand messages to ``broker``'s producer (see the module's docstring): each
    call appends one ack per message to ``acks`` as it goes, so that a failure part way
    leaves the acks of what was handed over."""
    producer = bare_producer(broker)
    if producer is not None:
        return partial(send_batches, producer)
    return partial(_publish_each, broker)


async def _publish_each(broker: KafkaBroker, messages: Sequence[Outgoing], acks: list[Any]) -> None:
    for message in messages:
        try:
            ack = await broker.publish(
                message.value, message.topic, key=message.key, headers={"content-type": JSON},
                no_confirm=True,
            )  # fmt: skip
        except MessageSizeTooLargeError as error:
            raise MessageTooLarge(message, str(error)) from None
        acks.append(ack)


_partitioner = DefaultPartitioner()  # what FastStream's producer partitions keys with


async def send_batches(
    producer: AIOKafkaProducer, messages: Sequence[Outgoing], acks: list[Any]
) -> None:
    """Hand ``messages`` to ``producer`` as one record batch per partition (another when
    one is full), each message to the partition ``send`` would give its key; a message's
    ack is its batch's future. A batch waits while the producer still holds one of an
    earlier request for the same partition."""
    # The limit send() checks each message against; aiokafka keeps it private.
    limit: int = getattr(producer, "_max_request_size", 1_048_576)
    partitions = {
        topic: sorted(await producer.partitions_for(topic)) for topic in {m.topic for m in messages}
    }
    slot_of: dict[tuple[str, bytes], tuple[str, int]] = {}
    slots: dict[tuple[str, int], list[int]] = {}
    for index, message in enumerate(messages):
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(message.key, message.value, HEADERS)
        if size > limit:
            raise MessageTooLarge(message, f"{size} bytes, over the producer's limit of {limit}")
        slot = slot_of.get((message.topic, message.key))
        if slot is None:  # a request's events often share a key; murmur2 is pure Python
            partition = _partitioner(message.key, partitions[message.topic], None)
            slot = slot_of[message.topic, message.key] = (message.topic, partition)
        slots.setdefault(slot, []).append(index)
    futures: list[Any] = [None] * len(messages)
    try:
        for (topic, partition), indexes in slots.items():
            while indexes:
                batch, taken = producer.create_batch(), 0
                for index in indexes:
                    message = messages[index]
                    if (
                        batch.append(
                            key=message.key, value=message.value, timestamp=None, headers=HEADERS
                        )
                        is None
                    ):
                        break  # full (an empty batch takes any message)
                    taken += 1
                future = await producer.send_batch(batch, topic, partition=partition)
                for index in indexes[:taken]:
                    futures[index] = future
                indexes = indexes[taken:]
    finally:
        acks.extend(futures)


def bare_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The connected aiokafka producer of ``broker`` if no publish middleware is set."""
    if getattr(broker, "middlewares", ()):
        return None
    # FastStream keeps its producer state in a private attribute; anything unexpected
    # (another FastStream version, the test broker's fake) falls back to broker.publish.
    state = getattr(getattr(broker, "config", None), "producer", None)
    try:
        producer = getattr(getattr(state, "_producer", None), "producer", None)
    except IncorrectState:  # not connected: broker.publish says so
        return None
    return producer if isinstance(producer, AIOKafkaProducer) else None


def _forget(acks: Iterable[Any]) -> None:
    """Stop caring about ``acks`` without leaving 'exception never retrieved' noise."""
    for ack in acks:
        if isinstance(ack, asyncio.Future):
            ack.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


__all__ = [
    "HandOver",
    "MessageTooLarge",
    "PublishFailed",
    "bare_producer",
    "hand_over",
    "publish_all",
    "send_batches",
]
