"""Metrics every consumer reports (default registry; served on /metrics)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from schemas.deadletter import DeadLetterRecord

MESSAGES_CONSUMED = Counter(
    "attune_consumer_messages",
    "Messages read from Kafka, valid or not.",
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


def count_batch(consumer: str, topics: Sequence[str]) -> None:
    """Count a batch's messages, by topic."""
    BATCH_SIZE.labels(consumer).observe(len(topics))
    for topic, count in Tally(topics).items():
        MESSAGES_CONSUMED.labels(topic, consumer).inc(count)


def count_dead_letters(records: Sequence[DeadLetterRecord]) -> None:
    for record in records:
        MESSAGES_DEAD_LETTERED.labels(record.topic, record.consumer, record.reason).inc()


__all__ = [
    "BATCH_SECONDS",
    "BATCH_SIZE",
    "MESSAGES_CONSUMED",
    "MESSAGES_DEAD_LETTERED",
    "count_batch",
    "count_dead_letters",
]
