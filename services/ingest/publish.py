"""Publishing a request's messages and waiting until the broker has stored all of them.

Every message is handed to the producer first (without waiting), then every
acknowledgement (acks=all) is awaited under one deadline, which is far faster than
publishing one message after another. A message whose send fails is sent once more
while time remains (e.g. the first produce after a broker restart): consumers
deduplicate by messageId and content versions, so a repeat is harmless.

Messages go to aiokafka's producer under the FastStream broker directly when nothing
needs FastStream's publish path: that path (message building, middlewares) costs
about as much per message again as aiokafka's own send. With a publish middleware
(tracing on: the producer spans and the trace headers) or the in-memory test broker,
they go through ``broker.publish``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker

from services.ingest.messages import Outgoing

log = logging.getLogger(__name__)

JSON = "application/json"
Send = Callable[[Outgoing], Awaitable[Any]]  # hands one message over; returns its ack


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
    send = sender(broker)
    try:
        async with asyncio.timeout_at(deadline):
            for message in messages:
                try:
                    acks.append(await send(message))
                except MessageSizeTooLargeError as error:
                    raise MessageTooLarge(message, str(error)) from None
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
            raise PublishFailed(f"{len(pending)} message(s) not acknowledged in time")
    failures: list[tuple[Outgoing, BaseException]] = []
    for message, ack in zip(messages, acks, strict=True):
        if isinstance(ack, asyncio.Future) and (failure := ack.exception()) is not None:
            failures.append((message, failure))
    return failures


def sender(broker: KafkaBroker) -> Send:
    """How to hand a message to ``broker``'s producer (see the module's docstring)."""
    producer = bare_producer(broker)
    if producer is not None:
        headers = [("content-type", JSON.encode())]

        async def send(message: Outgoing) -> Any:
            return await producer.send(
                message.topic, message.value, key=message.key, headers=headers
            )

        return send

    async def publish(message: Outgoing) -> Any:
        return await broker.publish(
            message.value, message.topic, key=message.key, headers={"content-type": JSON},
            no_confirm=True,
        )  # fmt: skip

    return publish


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


__all__ = ["MessageTooLarge", "PublishFailed", "Send", "bare_producer", "publish_all", "sender"]
