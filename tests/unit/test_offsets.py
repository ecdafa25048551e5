"""The batch planner: redeliveries are skipped, gaps are fetched again, resets start a
new epoch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiokafka
import pytest

from services.common.offsets import (
    LogProbe,
    PartitionTracker,
    Watermark,
    partition_id,
    plan_batch,
)


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int


def recs(partition: int, *offsets: int) -> list[Rec]:
    return [Rec(partition, o) for o in offsets]


def test_a_fresh_store_applies_everything_and_records_the_last_offsets() -> None:
    plan = plan_batch(recs(0, 0, 1, 2) + recs(1, 0), {})
    assert plan.apply == recs(0, 0, 1, 2) + recs(1, 0)
    assert plan.marks == {0: Watermark(0, 2), 1: Watermark(0, 0)}
    assert (plan.seek, plan.skipped, plan.resets) == ({}, 0, [])


def test_records_at_or_below_the_watermark_are_skipped() -> None:
    plan = plan_batch(recs(0, 3, 4, 5, 6), {0: Watermark(0, 4)})
    assert plan.apply == recs(0, 5, 6)
    assert plan.skipped == 2
    assert plan.marks == {0: Watermark(0, 6)}


def test_a_batch_entirely_applied_keeps_the_watermark() -> None:
    plan = plan_batch(recs(0, 1, 2), {0: Watermark(0, 9)})
    assert plan.apply == []
    assert plan.marks == {0: Watermark(0, 9)}


def test_a_gap_is_fetched_again_and_only_that_partition_waits() -> None:
    plan = plan_batch(recs(0, 10, 11) + recs(1, 5), {0: Watermark(0, 4), 1: Watermark(0, 4)})
    assert plan.seek == {0: 5}
    assert plan.apply == recs(1, 5)
    assert plan.marks == {1: Watermark(0, 5)}


def test_a_gap_the_log_itself_has_is_accepted() -> None:
    """The log holds nothing from 5 to 9 (compaction, retention): the batch goes on."""
    plan = plan_batch(recs(0, 10, 11), {0: Watermark(0, 4)}, first_held={0: 10})
    assert plan.seek == {}
    assert plan.apply == recs(0, 10, 11)
    assert plan.marks == {0: Watermark(0, 11)}


def test_a_gap_is_fetched_again_while_the_log_holds_records_in_it() -> None:
    for held in (5, 7, None):  # None: the log could not be asked
        plan = plan_batch(recs(0, 12), {0: Watermark(0, 4)}, first_held={0: held})
        assert plan.seek == {0: 5}
        assert plan.apply == []
        assert plan.marks == {}


def test_a_partition_whose_end_is_not_past_the_watermark_was_reset() -> None:
    plan = plan_batch(recs(0, 0, 1), {0: Watermark(0, 500)}, highwater=lambda p: 2, log_starts={})
    assert plan.resets == [0]
    assert plan.apply == recs(0, 0, 1)
    assert plan.marks == {0: Watermark(1, 1)}
    assert partition_id(0, plan.marks[0].epoch) == "0.1"


def test_a_log_that_starts_with_another_record_is_a_new_log() -> None:
    mark = Watermark(0, 500, log_start_ms=1_000)
    same = plan_batch(recs(0, 501), {0: mark}, log_starts={0: 1_000})
    assert (same.resets, same.marks) == ([], {0: Watermark(0, 501, 1_000)})

    # The consumer kept its position (501) in the new log: it must go back to its start.
    reset = plan_batch(recs(0, 501), {0: mark}, log_starts={0: 2_000})
    assert reset.resets == [0]
    assert reset.seek == {0: 0}
    assert reset.apply == []

    assert reset.marks == {0: Watermark(1, -1, 2_000)}  # stored before anything applies
    after_seek = plan_batch(recs(0, 0, 1), {0: Watermark(1, -1, 2_000)}, log_starts={0: 2_000})
    assert after_seek.apply == recs(0, 0, 1)
    assert after_seek.marks == {0: Watermark(1, 1, 2_000)}


def test_the_first_batch_records_where_the_log_starts() -> None:
    plan = plan_batch(recs(0, 0), {}, log_starts={0: 1_234})
    assert plan.marks == {0: Watermark(0, 0, 1_234)}


def test_resets_are_only_looked_for_where_the_log_may_be_lost() -> None:
    plan = plan_batch(recs(0, 0, 1), {0: Watermark(0, 500, 1_000)}, highwater=lambda p: 2)
    assert plan.resets == []
    assert plan.skipped == 2


def test_a_normal_high_watermark_is_no_reset() -> None:
    plan = plan_batch(recs(0, 5), {0: Watermark(0, 4)}, highwater=lambda p: 6, log_starts={})
    assert plan.resets == []
    assert plan.marks == {0: Watermark(0, 5)}


class MemoryStore:
    def __init__(self, marks: dict[int, Watermark]) -> None:
        self.marks = marks

    async def load_watermarks(self) -> dict[int, Watermark]:
        return dict(self.marks)

    async def save_watermarks(self, marks: Mapping[int, Watermark]) -> None:
        self.marks.update(marks)


class LogHolding(LogProbe):
    """A log probe over a log that holds records from ``first`` on."""

    def __init__(self, first: int) -> None:
        super().__init__({})
        self.first = first

    async def first_offset_from(self, topic: str, partition: int, offset: int) -> int | None:
        return max(offset, self.first)


class Seeks:
    def __init__(self) -> None:
        self.to: list[int] = []

    def seek(self, partition: Any, offset: int) -> None:
        self.to.append(offset)


async def test_the_same_gapped_batch_planned_twice_is_fetched_again_both_times() -> None:
    """A batch retried after a Redis outage is planned again with the same records: the
    gap is still not accepted, so the records in it are not skipped for good."""
    tracker = PartitionTracker("attune.events", probe=LogHolding(first=0))
    store, consumer = MemoryStore({0: Watermark(0, 4)}), Seeks()
    for _ in range(2):
        plan = await tracker.plan(recs(0, 10, 11), store, consumer)
        assert (plan.seek, plan.apply, plan.marks) == ({0: 5}, [], {})
    assert consumer.to == [5, 5]


async def test_a_gap_the_log_has_is_accepted_however_often_it_is_planned() -> None:
    tracker = PartitionTracker("attune.events", probe=LogHolding(first=10))
    for _ in range(2):
        plan = await tracker.plan(recs(0, 10, 11), MemoryStore({0: Watermark(0, 4)}), Seeks())
        assert (plan.seek, plan.apply) == ({}, recs(0, 10, 11))


async def test_without_a_probe_a_gap_is_never_accepted() -> None:
    tracker = PartitionTracker("attune.events")
    plan = await tracker.plan(recs(0, 10), MemoryStore({0: Watermark(0, 4)}), Seeks())
    assert (plan.seek, plan.apply) == ({0: 5}, [])


def test_records_are_applied_in_partition_and_offset_order() -> None:
    plan = plan_batch([Rec(1, 0), Rec(0, 1), Rec(0, 0)], {})
    assert plan.apply == [Rec(0, 0), Rec(0, 1), Rec(1, 0)]


def test_watermarks_round_trip_as_json() -> None:
    assert Watermark.from_json(Watermark(2, 7, 99).to_json()) == Watermark(2, 7, 99)
    assert Watermark.from_json('{"epoch": 1, "offset": 3}') == Watermark(1, 3)


class FlakyConsumer:
    """Stands in for AIOKafkaConsumer: the first start fails, as with the broker down."""

    starts = 0

    def __init__(self, **options: object) -> None:
        self.started = self.stopped = False

    async def start(self) -> None:
        FlakyConsumer.starts += 1
        if FlakyConsumer.starts == 1:
            raise ConnectionError("broker down")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def offsets_for_times(self, wanted: dict[Any, int]) -> dict[Any, Any]:
        assert self.started, "asked before a successful start"
        assert not self.stopped, "asked after stop"
        return {tp: SimpleNamespace(timestamp=1_000) for tp in wanted}


async def test_a_log_start_probe_that_failed_to_start_tries_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", FlakyConsumer)
    monkeypatch.setattr(FlakyConsumer, "starts", 0)
    probe = LogProbe({})
    with pytest.raises(ConnectionError):
        await probe.log_starts("attune.events", [0])
    assert await probe.log_starts("attune.events", [0, 1]) == {0: 1_000, 1: 1_000}
    await probe.close()
