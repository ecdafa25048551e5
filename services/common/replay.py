"""Read a topic from the beginning (or a time) to its current end, batch by batch: the
driver behind ``attune replay``. It uses no consumer group, so the live consumers
and their committed offsets are left alone.

Each slice of records goes through two stages: ``prepare`` (synchronous: decoding,
on this process's CPU) returns the work that stores it (awaited: mostly waiting for
Redis or the vector index). Records are spread over ``lanes`` by partition; within a
lane, stores run one after the other in offset order, while lanes run concurrently,
so this process prepares and fetches while the store works on earlier slices. Use
more than one lane only when different partitions touch disjoint state (the user
model: a user's events are all in one partition)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import TypeAdapter

from services.common.kafka import aiokafka_options
from services.common.offsets import Watermark, plan_batch
from services.common.records import Envelope, decode_batch
from services.common.settings import Settings

log = logging.getLogger(__name__)

ReplayProgress = Callable[[int, int | None], None]  # (records done, records in all)
T = TypeVar("T")


@dataclass
class ReadStats:
    records: int = 0
    seconds: float = 0.0
    ends: dict[int, int] = field(default_factory=dict)  # partition -> end offset read to

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


async def read_topic(
    settings: Settings,
    topic: str,
    prepare: Callable[[Sequence[Any]], Coroutine[Any, Any, None]],
    *,
    since: datetime | None = None,
    batch_records: int = 50_000,
    prepare_records: int = 20_000,
    lanes: int = 1,
    progress: ReplayProgress | None = None,
) -> ReadStats:
    """Prepare and store every record of ``topic`` (from ``since``, else from the start)
    until the end the topic had when the read caught up with it."""
    consumer = AIOKafkaConsumer(
        **aiokafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        await consumer.start()
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist on the broker")
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        starts = await _start_offsets(consumer, assigned, since)
        # end_offsets can be stale on some brokers; the fetches' high watermarks refine it
        ends = await consumer.end_offsets(assigned)
        total = sum(max(0, ends[tp] - starts[tp]) for tp in assigned)
        stats = ReadStats()
        started = time.perf_counter()
        idle_polls = 0
        chains = _Chains(lanes)
        while True:
            fetched = await consumer.getmany(timeout_ms=1_000, max_records=batch_records)
            records = []
            for tp, batch in fetched.items():
                records.extend(batch)
                for start in range(0, len(batch), prepare_records):
                    await chains.add(tp.partition, prepare(batch[start : start + prepare_records]))
            stats.records += len(records)
            # The end each fetch reports (end_offsets can be stale on some brokers).
            ends.update({tp: h for tp in assigned if (h := consumer.highwater(tp)) is not None})
            total = sum(max(0, ends[tp] - starts[tp]) for tp in assigned)
            if progress is not None:
                progress(stats.records, total)
            idle_polls = 0 if records else idle_polls + 1
            if not records and (await _caught_up(consumer, assigned, ends) or idle_polls >= 10):
                break
        await chains.finish()
        stats.seconds = time.perf_counter() - started
        stats.ends = {tp.partition: end for tp, end in ends.items()}
        return stats
    finally:
        await consumer.stop()


@dataclass
class ReplayDecoder(Generic[T]):
    """What both replays do to each slice of records before storing it: plan it against
    the watermarks met so far in this replay (skip what is applied, notice gaps and
    log resets, as the live consumers do) and decode it. Records that do not decode
    are only counted: they went to the dead-letter topic when first consumed."""

    adapter: TypeAdapter[T]
    max_bytes: int
    marks: dict[int, Watermark] = field(default_factory=dict)
    rejected: int = 0

    def decode(self, records: Sequence[Any]) -> tuple[list[Envelope[T]], dict[int, Watermark]]:
        """The messages to apply, and the watermarks to store with them."""
        plan = plan_batch(records, self.marks)
        self.marks.update(plan.marks)
        batch = decode_batch(
            plan.apply,  # type: ignore[arg-type]  # the records it was given
            self.adapter,
            consumer="replay",
            max_bytes=self.max_bytes,
            epochs={partition: mark.epoch for partition, mark in plan.marks.items()},
        )
        self.rejected += len(batch.rejected)
        return batch.accepted, plan.marks


class _Chains:
    """Stores run in order within a lane, lanes concurrently, a bounded number pending."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        self.tails: dict[int, asyncio.Task[None]] = {}
        self.pending: deque[asyncio.Task[None]] = deque()

    async def add(self, partition: int, store: Coroutine[Any, Any, None]) -> None:
        lane = partition % self.lanes
        task = asyncio.create_task(_after(self.tails.get(lane), store))
        self.tails[lane] = task
        self.pending.append(task)
        while len(self.pending) > 2 * self.lanes:
            await self.pending.popleft()
        await asyncio.sleep(0)  # let the store send its first commands before we go on

    async def finish(self) -> None:
        await asyncio.gather(*self.pending)


async def _after(previous: asyncio.Task[None] | None, store: Coroutine[Any, Any, None]) -> None:
    if previous is not None:
        try:
            await previous
        except BaseException:
            store.close()  # never run: an earlier store of its lane failed
            raise
    await store


async def _start_offsets(
    consumer: AIOKafkaConsumer, assigned: list[TopicPartition], since: datetime | None
) -> dict[TopicPartition, int]:
    if since is None:
        await consumer.seek_to_beginning(*assigned)
        beginnings: dict[TopicPartition, int] = await consumer.beginning_offsets(assigned)
        return beginnings
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in assigned})
    ends = await consumer.end_offsets(assigned)
    starts = {}
    for tp in assigned:
        at = found.get(tp)
        starts[tp] = at.offset if at is not None else ends[tp]
        consumer.seek(tp, starts[tp])
    return starts


async def _caught_up(
    consumer: AIOKafkaConsumer, assigned: list[TopicPartition], ends: dict[TopicPartition, int]
) -> bool:
    for tp in assigned:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


__all__ = ["ReadStats", "ReplayDecoder", "ReplayProgress", "read_topic"]
