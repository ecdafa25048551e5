"""Which offsets a piece of derived state reflects, and what a consumer does with that.

Each store (the user model's namespace, the vector collection) keeps, per partition,
a *watermark*: every record up to ``offset`` is applied. It is written after each
batch is stored, so it is a safe lower bound even across a crash. With it a
consumer does not have to trust its consumer group's committed offsets:

- records at or below the watermark are already applied: skipped (a redelivery);
- a batch that starts past ``watermark + 1`` has a gap (the state is behind the group,
  e.g. right after a replay's switch-over, or after Redis lost its last second). The
  broker is asked, on a connection of its own, for the first record the log holds at or
  after ``watermark + 1``: if that is the batch's first record, the log itself has no
  records there (compaction, retention) and the gap is accepted; otherwise the consumer
  seeks back to ``watermark + 1`` and fetches again. Asking the log, rather than
  remembering an earlier seek, gives the same answer however often the same batch is
  planned (a retry after an outage) and wherever the consumer's position was moved
  since (a nack rewinds it to the batch's first record, a rebalance to the committed
  offset);
- where the log may be lost (the embedded, memory-only broker; never Apache Kafka), a
  partition was reset when its first record is not the one it was (its timestamp,
  asked of the broker before each batch), or its high watermark is not above the
  watermark: a new *epoch* starts, the consumer fetches the new log from its start,
  and everything in it is new. Offsets are only compared within one epoch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R", bound="HasPosition")


class HasPosition(Protocol):
    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


@dataclass(frozen=True)
class Watermark:
    epoch: int = 0
    offset: int = -1  # the last offset applied in this epoch; -1: none yet
    log_start_ms: int | None = None  # timestamp of the log's first record in this epoch

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    def as_dict(self) -> dict[str, int | None]:
        return {"epoch": self.epoch, "offset": self.offset, "log_start_ms": self.log_start_ms}

    @classmethod
    def from_json(cls, text: str | bytes) -> Watermark:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Watermark:
        start = data.get("log_start_ms")
        return cls(int(data["epoch"]), int(data["offset"]), None if start is None else int(start))


def partition_id(partition: int, epoch: int) -> str:
    """How the fold scripts name a partition: its number, plus the epoch after a reset."""
    return str(partition) if epoch == 0 else f"{partition}.{epoch}"


@dataclass
class BatchPlan:
    """What to do with one consumed batch."""

    apply: list[HasPosition] = field(default_factory=list)  # in (partition, offset) order
    skipped: int = 0  # already applied (redelivered)
    seek: dict[int, int] = field(default_factory=dict)  # partition -> offset to fetch from
    marks: dict[int, Watermark] = field(default_factory=dict)  # to store once applied
    resets: list[int] = field(default_factory=list)  # partitions that started a new epoch


def _was_reset(mark: Watermark, high: int | None, log_start: int | None) -> bool:
    if mark.offset >= 0 and high is not None and high <= mark.offset:
        return True
    return None not in (mark.log_start_ms, log_start) and log_start != mark.log_start_ms


def plan_batch(
    records: Sequence[R],
    marks: Mapping[int, Watermark],
    *,
    highwater: Callable[[int], int | None] = lambda partition: None,
    first_held: Mapping[int, int | None] | None = None,
    log_starts: Mapping[int, int | None] | None = None,
) -> BatchPlan:
    """Decide, per partition, what of ``records`` to apply, skip or fetch again.

    ``marks``: the store's watermarks; ``highwater``: the partition's high watermark
    from the last fetch (None if unknown); ``first_held``: per gapped partition, the
    first offset the log holds at or after ``watermark + 1`` (None: unknown), asked of
    the broker: the gap is accepted only when that is the batch's first record;
    ``log_starts``: the timestamp of each partition's first record, asked of the broker
    where it may lose its log (a real Kafka cluster never reuses offsets): when given,
    reset partitions are looked for.
    """
    first_held = first_held or {}
    plan = BatchPlan()
    by_partition: dict[int, list[R]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(record.partition, []).append(record)
    for partition, items in by_partition.items():
        mark = marks.get(partition, Watermark())
        if log_starts is not None:
            log_start = log_starts.get(partition)
            if _was_reset(mark, highwater(partition), log_start):
                mark = Watermark(mark.epoch + 1, -1, log_start)
                plan.resets.append(partition)
                plan.marks[partition] = mark  # stored even if nothing is applied yet
            elif mark.log_start_ms is None:
                mark = Watermark(mark.epoch, mark.offset, log_start)
        first = items[0].offset
        if first > mark.offset + 1 and first_held.get(partition) != first:
            plan.seek[partition] = mark.offset + 1
            continue
        fresh = [r for r in items if r.offset > mark.offset]
        plan.skipped += len(items) - len(fresh)
        plan.apply.extend(fresh)
        plan.marks[partition] = (
            Watermark(mark.epoch, fresh[-1].offset, mark.log_start_ms) if fresh else mark
        )
    return plan


class WatermarkStore(Protocol):
    async def load_watermarks(self) -> dict[int, Watermark]: ...

    async def save_watermarks(self, marks: Mapping[int, Watermark]) -> None: ...


class SeekableConsumer(Protocol):
    """The parts of AIOKafkaConsumer a tracker uses (FastStream's test consumer has seek)."""

    def seek(self, partition: Any, offset: int) -> None: ...


class LogProbe:
    """Asks the broker about a partition's log on a connection of its own (on the
    consumer's, a request would wait behind its pending fetch): the first record's
    timestamp (where the broker may lose its log) and the first offset held at or after
    a given one (to tell a gap in the log from one in the state). It connects on first
    use, and again after ``close``; whoever made it closes it, after the consumer using
    it has stopped."""

    FETCH_TIMEOUT_MS = 5_000

    def __init__(self, options: Mapping[str, Any], *, log_may_reset: bool = False) -> None:
        self.options = dict(options)
        self.log_may_reset = log_may_reset
        self._client: Any = None

    async def _connected(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        if self._client is None:
            client = AIOKafkaConsumer(
                **self.options, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest",
            )  # fmt: skip
            try:
                await client.start()
            except BaseException:
                await client.stop()  # a failed start leaves connections open
                raise
            self._client = client
        return self._client

    async def first_offset_from(self, topic: str, partition: int, offset: int) -> int | None:
        """The offset of the first record the log holds at or after ``offset`` (a
        compacted or expired stretch is skipped); None if none came in time."""
        from aiokafka import TopicPartition

        client = await self._connected()
        tp = TopicPartition(topic, partition)
        client.assign([tp])
        client.seek(tp, offset)
        found = await client.getmany(tp, timeout_ms=self.FETCH_TIMEOUT_MS, max_records=1)
        records = found.get(tp, [])
        return records[0].offset if records else None

    async def log_starts(self, topic: str, partitions: Sequence[int]) -> dict[int, int | None]:
        from aiokafka import TopicPartition

        client = await self._connected()
        wanted = {TopicPartition(topic, p): 0 for p in partitions}
        found = await client.offsets_for_times(wanted)
        # An empty partition has no first record (some brokers answer a timestamp of -1).
        return {
            tp.partition: at.timestamp if at is not None and at.timestamp >= 0 else None
            for tp, at in found.items()
        }

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.stop()


class PartitionTracker:
    """One per consumer process and topic: plans each batch against the store's
    watermarks, asks the log about gaps, and seeks the consumer back over them."""

    def __init__(self, topic: str, *, probe: LogProbe | None = None) -> None:
        """``probe``: how the log is asked about gaps (without one, a gap is always
        fetched again, never accepted) and, where it may be lost, about resets."""
        self.topic = topic
        self.probe = probe

    async def plan(
        self, records: Sequence[R], store: WatermarkStore, consumer: SeekableConsumer | None
    ) -> BatchPlan:
        from aiokafka import TopicPartition

        marks = await store.load_watermarks()
        highwater = getattr(consumer, "highwater", None)

        def high(partition: int) -> int | None:
            value = highwater(TopicPartition(self.topic, partition)) if highwater else None
            return value if isinstance(value, int) else None

        log_starts = None
        if self.probe is not None and self.probe.log_may_reset:
            partitions = sorted({r.partition for r in records})
            log_starts = await self.probe.log_starts(self.topic, partitions)
        plan = plan_batch(records, marks, highwater=high, log_starts=log_starts)
        if plan.seek and self.probe is not None:
            first_held = {
                partition: await self.probe.first_offset_from(self.topic, partition, offset)
                for partition, offset in plan.seek.items()
            }
            plan = plan_batch(
                records, marks, highwater=high, first_held=first_held, log_starts=log_starts
            )
            for partition, held in first_held.items():
                if partition not in plan.seek:
                    log.info(
                        "%s[%d]: the log holds nothing more before %s; going on from there",
                        self.topic, partition, held,
                    )  # fmt: skip
        for partition in plan.resets:
            log.warning(
                "%s[%d] was reset (the broker lost its log): epoch %d starts",
                self.topic, partition, marks[partition].epoch + 1,
            )  # fmt: skip
        for partition, offset in plan.seek.items():
            log.info("%s[%d]: state is at %d, fetching from there", self.topic, partition, offset)
            if consumer is not None:
                consumer.seek(TopicPartition(self.topic, partition), offset)
        return plan

    async def resume(
        self, store: WatermarkStore, consumer: Any, partitions: Sequence[int]
    ) -> dict[int, int]:
        """On assignment: where the store's state is behind the group's committed offset
        (Redis came back empty or from an older copy), start the partition where the
        state ends, so that it is caught up even when no new record arrives on it (gap
        detection needs a batch to notice). A partition the group never committed
        starts where the consumer's ``auto_offset_reset`` says, as before; a state ahead
        of the group skips what it holds batch by batch. Returns the partitions moved
        back and where they start."""
        from aiokafka import TopicPartition

        marks = await store.load_watermarks()
        moved: dict[int, int] = {}
        for partition in partitions:
            tp = TopicPartition(self.topic, partition)
            committed = await consumer.committed(tp)
            mark = marks.get(partition)
            start = mark.offset + 1 if mark is not None else 0
            if committed is not None and start < committed:
                consumer.seek(tp, start)  # below the log's start: reset to its beginning
                moved[partition] = start
        if moved:
            log.info("%s: the state is behind the group; starting at %s", self.topic, moved)
        return moved


__all__ = [
    "BatchPlan",
    "LogProbe",
    "PartitionTracker",
    "SeekableConsumer",
    "Watermark",
    "WatermarkStore",
    "partition_id",
    "plan_batch",
]
