"""Kafka records as the consumers see them: raw, then decoded into contract messages
or turned into dead-letter records that say why they could not be.

Handlers receive the raw records (the subscriber's decoder is :func:`keep_raw`) so
that a malformed message reaches us as bytes, goes to the dead-letter topic with
its reason, and never stops the consumer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from faststream import StreamMessage
from pydantic import TypeAdapter, ValidationError

from schemas.deadletter import DeadLetterReason, DeadLetterRecord
from services.common.offsets import partition_id

T = TypeVar("T")

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


def dead_letter_record(
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
            batch.rejected.append(dead_letter_record(record, consumer, reason, error))
            continue
        try:
            message = adapter.validate_json(value)
        except ValidationError as problem:
            reason, error = _why_invalid(value, problem)
            batch.rejected.append(dead_letter_record(record, consumer, reason, error))
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


__all__ = [
    "DecodedBatch",
    "Envelope",
    "RawRecord",
    "dead_letter_record",
    "decode_batch",
    "describe_validation_error",
    "keep_raw",
    "raw_records",
]
