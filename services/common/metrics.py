"""Metrics every consumer reports, and the dependency gauge every service reports
(default registry; served on /metrics). Names are prefixed ``attune_``; the
dashboard (deploy/observability/grafana/dashboards/attune.json) and the alert rules
(deploy/observability/rules/attune.yml) are built on them."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from schemas.deadletter import DeadLetterRecord

MESSAGES_CONSUMED = Counter(
    "attune_consumer_messages",
    "Messages read from Kafka, valid or not.",
    ["topic", "consumer"],
)
MESSAGES_FAILED = Counter(
    "attune_consumer_failed_messages",
    "Messages of batches whose processing raised (not committed: they are redelivered).",
    ["topic", "consumer"],
)
MESSAGES_DEAD_LETTERED = Counter(
    "attune_consumer_dead_lettered",
    "Messages sent to the dead-letter topic, by reason.",
    ["topic", "consumer", "reason"],
)
BATCH_SECONDS = Histogram(
    "attune_consumer_batch_duration_seconds",
    "Time to process one consumed batch, from decoding to the store write.",
    ["consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "attune_consumer_batch_size",
    "Messages per consumed batch.",
    ["consumer"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
CONSUMER_LAG = Gauge(
    "attune_consumer_lag",
    "Messages in the partition after the last batch consumed from it: the high watermark "
    "of the consumer's last fetch minus the next offset to consume.",
    ["topic", "partition", "consumer"],
)
FRESHNESS_SECONDS = Histogram(
    "attune_freshness_seconds",
    "From a message entering Kafka (its record timestamp) to its effect being stored.",
    ["topic", "consumer"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
DEPENDENCY_UP = Gauge(
    "attune_dependency_up",
    "1 when the dependency answered its last check (readiness probe or store call), "
    "0 when it did not.",
    ["dependency"],
)


class Positioned(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class HasTimestamp(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def timestamp_ms(self) -> int: ...


def count_batch(consumer: str, topics: Sequence[str]) -> None:
    """Count a batch's messages, by topic."""
    BATCH_SIZE.labels(consumer).observe(len(topics))
    for topic, count in Tally(topics).items():
        MESSAGES_CONSUMED.labels(topic, consumer).inc(count)


def count_dead_letters(records: Sequence[DeadLetterRecord]) -> None:
    for record in records:
        MESSAGES_DEAD_LETTERED.labels(record.topic, record.consumer, record.reason).inc()


def count_failed(consumer: str, records: Sequence[Positioned]) -> None:
    for topic, count in Tally(record.topic for record in records).items():
        MESSAGES_FAILED.labels(topic, consumer).inc(count)


def record_lag(consumer: str, records: Sequence[Positioned], kafka_consumer: Any) -> None:
    """Per partition of the batch: the high watermark of the last fetch (what the
    broker holds; right on every broker, unlike ListOffsets on the embedded one)
    minus the offset after the batch's last record."""
    highwater = getattr(kafka_consumer, "highwater", None)
    if highwater is None or not records:
        return
    from aiokafka import TopicPartition

    last: dict[tuple[str, int], int] = {}
    for record in records:
        position = (record.topic, record.partition)
        if record.offset > last.get(position, -1):
            last[position] = record.offset
    for (topic, partition), offset in last.items():
        high = highwater(TopicPartition(topic, partition))
        if isinstance(high, int):
            lag = max(0, high - (offset + 1))
            CONSUMER_LAG.labels(topic, str(partition), consumer).set(lag)


def observe_freshness(consumer: str, stored: Iterable[HasTimestamp]) -> None:
    """Once their effect is stored: how long after entering Kafka each message got there."""
    now_ms = time.time() * 1000
    children: dict[str, Any] = {}
    for item in stored:
        child = children.get(item.topic)
        if child is None:
            child = children[item.topic] = FRESHNESS_SECONDS.labels(item.topic, consumer)
        child.observe(max(0.0, now_ms - item.timestamp_ms) / 1000)


def set_dependency_up(dependency: str, up: bool) -> None:
    DEPENDENCY_UP.labels(dependency).set(1 if up else 0)


@contextmanager
def consuming(consumer: str, records: Sequence[Positioned], kafka_consumer: Any) -> Iterator[None]:
    """Around a batch handler: when it raises, its messages count as failed (they are
    redelivered); when it returns, the lag of the partitions it consumed from."""
    try:
        yield
    except Exception:
        count_failed(consumer, records)
        raise
    record_lag(consumer, records, kafka_consumer)


__all__ = [
    "BATCH_SECONDS",
    "BATCH_SIZE",
    "CONSUMER_LAG",
    "DEPENDENCY_UP",
    "FRESHNESS_SECONDS",
    "MESSAGES_CONSUMED",
    "MESSAGES_DEAD_LETTERED",
    "MESSAGES_FAILED",
    "consuming",
    "count_batch",
    "count_dead_letters",
    "count_failed",
    "observe_freshness",
    "record_lag",
    "set_dependency_up",
]
