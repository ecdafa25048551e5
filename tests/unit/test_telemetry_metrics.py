"""The consumer metrics: failed batches, lag per partition from the fetch's high
watermark, and freshness."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from services.common.metrics import consuming, observe_freshness


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int = 0


class FetchedConsumer:
    """What aiokafka's consumer tells of the last fetch: the partitions' high watermarks."""

    def __init__(self, highwater: dict[TopicPartition, int]) -> None:
        self._highwater = highwater

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._highwater.get(partition)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_lag_is_the_high_watermark_minus_the_next_offset_per_partition() -> None:
    records = [Record("t.lag", 0, 4), Record("t.lag", 0, 5), Record("t.lag", 3, 9)]
    consumer = FetchedConsumer({TopicPartition("t.lag", 0): 10, TopicPartition("t.lag", 3): 10})
    with consuming("g-lag", records, consumer):
        pass
    assert sample("attune_consumer_lag", topic="t.lag", partition="0", consumer="g-lag") == 4
    assert sample("attune_consumer_lag", topic="t.lag", partition="3", consumer="g-lag") == 0


def test_a_batch_that_raises_counts_its_messages_as_failed() -> None:
    labels = {"topic": "t.fail", "consumer": "g-fail"}
    before = sample("attune_consumer_failed_messages_total", **labels)
    with pytest.raises(RuntimeError), consuming("g-fail", [Record("t.fail", 0, 1)] * 3, None):
        raise RuntimeError("store down")
    assert sample("attune_consumer_failed_messages_total", **labels) == before + 3


def test_freshness_is_the_time_since_the_record_entered_kafka() -> None:
    labels = {"topic": "t.fresh", "consumer": "g-fresh"}
    entered = int(time.time() * 1000) - 1500
    observe_freshness("g-fresh", [Record("t.fresh", 0, 0, timestamp_ms=entered)])
    assert sample("attune_freshness_seconds_count", **labels) == 1
    assert 1.4 < sample("attune_freshness_seconds_sum", **labels) < 10
    assert sample("attune_freshness_seconds_bucket", le="1.0", **labels) == 0
