"""What both consumers (embedder, usermodel) share: decoding a batch of raw Kafka
records into contract messages, dead-lettering what cannot be decoded, and
retrying a store write through a dependency outage.

Handlers receive the raw records (the subscriber's decoder is :func:`keep_raw`) so
that a malformed message reaches us as bytes, goes to the dead-letter topic with
its reason, and never stops the consumer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from faststream import AckPolicy, StreamMessage
from faststream.kafka import KafkaBroker, KafkaRouter
from pydantic import TypeAdapter, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
)

from schemas.deadletter import DeadLetterReason, DeadLetterRecord
from schemas.topics import DEAD_LETTER
from services.common.metrics import count_dead_letters, set_dependency_up
from services.common.offsets import partition_id
from services.common.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

SUPPORTED_SCHEMA_VERSIONS = frozenset({1})


class RawRecord(Protocol):
    """The parts of an aiokafka ConsumerRecord we use."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Envelope(Generic[T]):
    """A decoded message and where it came from."""

    message: T
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()
    epoch: int = 0  # the partition's epoch (see services/common/offsets.py)

    @property
    def partition_id(self) -> str:
        return partition_id(self.partition, self.epoch)


@dataclass
class DecodedBatch(Generic[T]):
    accepted: list[Envelope[T]] = field(default_factory=list)
    rejected: list[DeadLetterRecord] = field(default_factory=list)


async def keep_raw(message: Any) -> None:
    """Subscriber decoder that decodes nothing: the handler reads the raw records."""
    return None


BatchHandler = Callable[..., Awaitable[None]]


def batch_subscriber(
    router: KafkaRouter, topic: str, settings: Settings, group_id: str, *, description: str
) -> Callable[[BatchHandler], object]:
    """How every Attune consumer subscribes: batches of raw records, in a consumer group,
    committed only after the batch is stored (an error nacks it: it is redelivered)."""
    return router.subscriber(
        topic,
        batch=True,
        group_id=group_id,
        decoder=keep_raw,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_records=settings.consumer_max_records,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_session_timeout_ms // 3,
        title=f"{group_id}: {topic}",
        description=description,
    )


def raw_records(message: StreamMessage[Any]) -> Sequence[RawRecord]:
    """The records of a batch (a tuple from Kafka, a list from TestKafkaBroker)."""
    raw = message.raw_message
    return raw if isinstance(raw, tuple | list) else (raw,)


def describe_validation_error(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(message)'}: {problem['msg']}"
        for problem in error.errors()
    )


MAX_DEAD_LETTER_VALUE = 256 * 1024


def _dead_letter(
    record: RawRecord, consumer: str, reason: DeadLetterReason, error: str
) -> DeadLetterRecord:
    value = record.value or b""
    return DeadLetterRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=value[:MAX_DEAD_LETTER_VALUE],
        value_size=len(value),
        reason=reason,
        error=error,
        consumer=consumer,
    )


def _why_invalid(value: bytes, problem: ValidationError) -> tuple[DeadLetterReason, str]:
    """Tell a message that is not JSON, or of another schema_version, from one that
    breaks the contract (only decoded again on this, the rare, path)."""
    if any(error["type"] == "json_invalid" for error in problem.errors()):
        try:
            json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return "invalid_json", str(error)
        return "invalid_json", describe_validation_error(problem)
    data = json.loads(value)
    version = data.get("schema_version", 1) if isinstance(data, dict) else 1
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        return (
            "unsupported_schema_version",
            f"schema_version {version!r} is not one of {sorted(SUPPORTED_SCHEMA_VERSIONS)}",
        )
    return "schema_violation", describe_validation_error(problem)


def decode_batch(
    records: Sequence[RawRecord],
    adapter: TypeAdapter[T],
    *,
    consumer: str,
    max_bytes: int,
    epochs: Mapping[int, int] | None = None,
) -> DecodedBatch[T]:
    """Split raw records into valid messages and dead-letter records with the reason."""
    epochs = epochs or {}
    batch: DecodedBatch[T] = DecodedBatch()
    for record in records:
        value = record.value or b""
        if len(value) > max_bytes:
            reason: DeadLetterReason = "too_large"
            error = f"{len(value)} bytes, more than the {max_bytes} allowed"
            batch.rejected.append(_dead_letter(record, consumer, reason, error))
            continue
        try:
            message = adapter.validate_json(value)
        except ValidationError as problem:
            reason, error = _why_invalid(value, problem)
            batch.rejected.append(_dead_letter(record, consumer, reason, error))
            continue
        batch.accepted.append(
            Envelope(
                message=message,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                timestamp_ms=record.timestamp,
                headers=tuple(record.headers or ()),
                epoch=epochs.get(record.partition, 0),
            )
        )
    return batch


async def publish_dead_letters(broker: KafkaBroker, records: Sequence[DeadLetterRecord]) -> None:
    """Publish and wait for the broker's ack, before the batch is committed."""
    if not records:
        return
    count_dead_letters(records)
    await asyncio.gather(
        *(
            broker.publish(record.model_dump(mode="json"), DEAD_LETTER.name, key=record.key)
            for record in records
        )
    )
    for record in records:
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s",
            record.topic, record.partition, record.offset, record.reason, record.error,
        )  # fmt: skip


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "dependency unavailable (%s); retry %d in %.1f s",
        error,
        state.attempt_number,
        state.next_action.sleep if state.next_action else 0,
    )


async def retry_through_outage(
    operation: Callable[[], Awaitable[R]],
    transient: tuple[type[BaseException], ...],
    *,
    max_wait_s: float = 10.0,
    dependency: str | None = None,
) -> R:
    """Run ``operation`` until it succeeds, backing off exponentially (capped) on the
    ``transient`` errors: a dependency outage pauses the consumer, it never drops a
    batch. Any other error propagates (the batch is not committed). ``dependency``
    names what an outage is of, for the ``attune_dependency_up`` gauge."""

    def before_sleep(state: RetryCallState) -> None:
        if dependency is not None:
            set_dependency_up(dependency, False)
        _log_retry(state)

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(transient),
        wait=wait_exponential(multiplier=0.1, max=max_wait_s),
        before_sleep=before_sleep,
        reraise=True,
    ):
        with attempt:
            result = await operation()
            if dependency is not None:
                set_dependency_up(dependency, True)
            return result
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = [
    "DecodedBatch",
    "Envelope",
    "RawRecord",
    "batch_subscriber",
    "decode_batch",
    "describe_validation_error",
    "keep_raw",
    "publish_dead_letters",
    "raw_records",
    "retry_through_outage",
]
