"""Batches in a pipeline of depth two: order, commits only after a batch is stored,
and a failed batch taking the one fetched behind it down with it (no broker: the
stores are gated by events, so every interleaving below is forced, not timed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from pydantic import BaseModel, TypeAdapter

from services.common.consumer import BatchConsumer
from services.common.offsets import Watermark
from services.common.pipeline import BatchPipeline
from services.common.records import Envelope, RawRecord
from services.common.settings import Settings

TOPIC = "attune.events"


@dataclass
class Record:
    partition: int
    offset: int
    value: bytes | None = b'{"text": "x"}'
    topic: str = TOPIC
    key: bytes | None = None
    timestamp: int = 0
    headers: Sequence[tuple[str, bytes]] = ()


def batch(*positions: tuple[int, int]) -> list[Record]:
    return [Record(partition, offset) for partition, offset in positions]


@dataclass
class Consumer:
    """Records what the pipeline asks of the Kafka consumer."""

    seeks: dict[int, int] = field(default_factory=dict)
    commits: list[dict[int, int]] = field(default_factory=list)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks[partition.partition] = offset

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        assert offsets is not None, "the pipeline commits explicit offsets only"
        self.commits.append({tp.partition: offset for tp, offset in offsets.items()})


@dataclass(frozen=True)
class Outcome:
    name: str
    commit: dict[int, int]


class Stores:
    """A ``store`` whose calls each wait for their batch's gate, and may fail."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.starts: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.done: list[str] = []
        self.failing: set[str] = set()

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def start(self, name: str) -> asyncio.Event:
        return self.starts.setdefault(name, asyncio.Event())

    async def __call__(
        self, records: Sequence[RawRecord], broker: Any, consumer: Any, name: str
    ) -> Outcome:
        self.started.append(name)
        self.start(name).set()
        await self.gate(name).wait()
        if name in self.failing:
            raise RuntimeError(f"{name} cannot be stored")
        self.done.append(name)
        commit: dict[int, int] = {}
        for record in records:
            commit[record.partition] = max(record.offset + 1, commit.get(record.partition, 0))
        return Outcome(name, commit)


class Named:
    """An ``ahead`` that names each batch (b1, b2, ...) and remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.prepared: dict[str, asyncio.Event] = {}

    def event(self, name: str) -> asyncio.Event:
        return self.prepared.setdefault(name, asyncio.Event())

    async def __call__(self, records: Sequence[RawRecord]) -> str:
        self.seen.append(f"b{len(self.seen) + 1}")
        self.event(self.seen[-1]).set()
        return self.seen[-1]


def pipeline(
    stores: Stores, stored: list[str] | None = None, named: Named | None = None
) -> BatchPipeline[str, Outcome]:
    def on_stored(outcome: Outcome) -> None:
        if stored is not None:
            stored.append(outcome.name)

    return BatchPipeline(TOPIC, ahead=named or Named(), store=stores, on_stored=on_stored)


async def test_the_next_batch_is_prepared_while_one_is_stored_and_stored_after_it() -> None:
    stores, consumer, stored, named = Stores(), Consumer(), list[str](), Named()
    line = pipeline(stores, stored, named)

    await line.submit(batch((0, 0), (1, 0)), None, consumer)
    second = asyncio.create_task(line.submit(batch((0, 1), (1, 1)), None, consumer))
    await stores.start("b1").wait()
    await named.event("b2").wait()  # b2 is prepared while b1 is being stored

    assert stores.started == ["b1"]
    assert not second.done()  # FastStream fetches nothing more until b1 is stored
    assert consumer.commits == []  # b1 is not stored yet: nothing is committed

    stores.gate("b1").set()
    await second
    await stores.start("b2").wait()  # b2 is stored only once b1 is
    assert stores.done == ["b1"]
    assert stored == ["b1"]

    stores.gate("b2").set()
    await line.drain()
    assert stores.done == ["b1", "b2"]
    assert stored == ["b1", "b2"]
    assert consumer.commits == [{0: 1, 1: 1}, {0: 2, 1: 2}]  # each its own, in order
    assert consumer.seeks == {}


async def test_commits_stay_in_order_when_one_is_slow() -> None:
    stores, named = Stores(), Named()
    slow = asyncio.Event()

    class SlowFirst(Consumer):
        async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
            if not self.commits and not slow.is_set():
                await slow.wait()
            await super().commit(offsets)

    consumer = SlowFirst()
    line = pipeline(stores, named=named)
    stores.gate("b1").set()
    stores.gate("b2").set()
    await line.submit(batch((0, 0)), None, consumer)
    await line.submit(batch((0, 1)), None, consumer)
    await line.in_flight.stored  # type: ignore[union-attr]  # b2 is stored ...
    assert consumer.commits == []  # ... and waits for b1's commit to commit its own

    slow.set()
    await line.drain()
    assert consumer.commits == [{0: 1}, {0: 2}]


async def test_a_failed_batch_commits_nothing_and_the_one_behind_it_is_dropped() -> None:
    stores, consumer, stored = Stores(), Consumer(), list[str]()
    stores.failing.add("b1")
    line = pipeline(stores, stored)

    await line.submit(batch((0, 10), (0, 11), (1, 5)), None, consumer)
    stores.gate("b1").set()
    await line.submit(batch((0, 12), (2, 7)), None, consumer)

    assert stores.started == ["b1"]  # b2 never reaches the store
    assert stored == []
    assert consumer.commits == []
    # Both batches come again: each partition from its first record among the two.
    assert consumer.seeks == {0: 10, 1: 5, 2: 7}
    assert line.in_flight is None

    stores.failing.clear()
    stores.gate("b3").set()
    await line.submit(batch((0, 10), (0, 11), (1, 5)), None, consumer)
    await line.drain()
    assert stored == ["b3"]
    assert consumer.commits == [{0: 12, 1: 6}]


async def test_a_batch_that_fails_with_nothing_behind_it_rewinds_its_partitions() -> None:
    stores, consumer = Stores(), Consumer()
    stores.failing.add("b1")
    stores.gate("b1").set()
    line = pipeline(stores)

    await line.submit(batch((3, 40), (3, 41), (4, 2)), None, consumer)
    await line.drain()

    assert consumer.seeks == {3: 40, 4: 2}  # what a nack would do
    assert consumer.commits == []


# The skeleton's side: what it prepares ahead is used only when the plan confirms it.


class Note(BaseModel):
    text: str


@dataclass
class Store:
    marks: dict[int, Watermark] = field(default_factory=dict)

    async def load_watermarks(self) -> dict[int, Watermark]:
        return dict(self.marks)

    async def save_watermarks(self, marks: Mapping[int, Watermark]) -> None:
        self.marks.update(marks)


class Broker:
    async def publish(self, body: dict[str, Any], topic: str, key: bytes | None = None) -> None:
        raise AssertionError("nothing here is a dead letter")


@dataclass
class Folds:
    """``apply`` and ``prepare`` that record which one stored what."""

    prepared: list[list[tuple[int, int, int]]] = field(default_factory=list)
    by_prepared: list[list[tuple[int, int, int]]] = field(default_factory=list)
    by_apply: list[list[tuple[int, int, int]]] = field(default_factory=list)

    async def apply(self, envelopes: list[Envelope[Note]], store: Store) -> int:
        self.by_apply.append(positions(envelopes))
        return len(envelopes)

    async def prepare(self, envelopes: list[Envelope[Note]]) -> Any:
        self.prepared.append(positions(envelopes))

        async def stored(store: Store) -> int:
            self.by_prepared.append(positions(envelopes))
            return len(envelopes)

        return stored


def positions(envelopes: list[Envelope[Note]]) -> list[tuple[int, int, int]]:
    return [(e.partition, e.offset, e.epoch) for e in envelopes]


def notes(*positions: tuple[int, int]) -> list[Record]:
    return [Record(p, o, json.dumps({"text": f"{p}@{o}"}).encode()) for p, o in positions]


def skeleton(store: Store, folds: Folds) -> BatchConsumer[Note, Store, int]:
    async def watermarks() -> Store:
        return store

    return BatchConsumer(
        topic=TOPIC, group_id="unit", settings=Settings(), adapter=TypeAdapter(Note),
        watermarks=watermarks, apply=folds.apply, prepare=folds.prepare, pipelined=True,
    )  # fmt: skip


async def test_what_was_prepared_ahead_is_stored_when_the_plan_applies_it_all() -> None:
    store, folds = Store(), Folds()
    consumer = skeleton(store, folds)
    records = notes((0, 0), (0, 1), (1, 0))

    ahead = await consumer.ahead(records)
    outcome = await consumer.handle(records, Broker(), None, ahead)  # type: ignore[arg-type]

    assert folds.by_prepared == [[(0, 0, 0), (0, 1, 0), (1, 0, 0)]]
    assert folds.by_apply == []
    assert outcome.commit == {0: 2, 1: 1}
    assert store.marks == {0: Watermark(0, 1), 1: Watermark(0, 0)}


async def test_a_redelivery_is_planned_again_and_what_was_prepared_is_not_used() -> None:
    store, folds = Store({0: Watermark(0, 0)}), Folds()
    consumer = skeleton(store, folds)
    records = notes((0, 0), (0, 1))

    ahead = await consumer.ahead(records)
    outcome = await consumer.handle(records, Broker(), None, ahead)  # type: ignore[arg-type]

    assert folds.by_prepared == []
    assert folds.by_apply == [[(0, 1, 0)]]  # offset 0 is already applied
    assert outcome.skipped == 1


async def test_a_new_epoch_is_decoded_again_in_it() -> None:
    store, folds = Store({0: Watermark(2, 5)}), Folds()
    consumer = skeleton(store, folds)
    records = notes((0, 6), (0, 7))

    ahead = await consumer.ahead(records)  # guessed in epoch 0: nothing planned yet
    await consumer.handle(records, Broker(), None, ahead)  # type: ignore[arg-type]
    assert folds.by_apply == [[(0, 6, 2), (0, 7, 2)]]

    later = notes((0, 8))
    ahead = await consumer.ahead(later)  # the epoch the last plan met
    await consumer.handle(later, Broker(), None, ahead)  # type: ignore[arg-type]
    assert folds.by_prepared == [[(0, 8, 2)]]


def test_a_pipelined_consumer_needs_prepare() -> None:
    async def watermarks() -> Store:
        return Store()

    with pytest.raises(ValueError, match="prepare"):
        BatchConsumer(
            topic=TOPIC, group_id="unit", settings=Settings(), adapter=TypeAdapter(Note),
            watermarks=watermarks, apply=Folds().apply, pipelined=True,
        )  # fmt: skip
