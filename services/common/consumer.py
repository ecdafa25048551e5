"""The one batch skeleton both consumers (embedder, usermodel) run on.

Per consumed batch, :meth:`BatchConsumer.handle`:

1. plans it against the watermarks of the store it writes to (skip what the store
   already reflects, seek back over a gap, start a new epoch after a broker reset:
   :mod:`services.common.offsets`);
2. decodes the records to apply, and publishes the malformed ones to the dead-letter
   topic with their reason (:mod:`services.common.records`);
3. hands the valid messages to the consumer's ``apply``;
4. saves the watermarks the store now reflects;
5. records the metrics; FastStream then commits the offsets (an error nacks the batch:
   it is redelivered).

A consumer supplies only what is particular to it: the contract it decodes (a
``TypeAdapter``), its store's watermarks, its ``apply``, and which errors mean its
store is out (the whole batch is then planned and tried again after a capped backoff:
the store may have come back without what it held).

With ``pipelined``, batches go through :mod:`services.common.pipeline`: the next batch
is fetched, decoded and prepared (``prepare``) while the store applies this one.

Any other error of ``apply`` is taken for one that no retry would mend: the batch is
split in halves, again and again, until the records that fail alone are found; they
go to the dead-letter topic with the error (``processing_failed``) and the rest is
applied. Every dead letter is published once per delivery, however often the batch is
tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaBroker as BrokerParam
from faststream.kafka.annotations import KafkaMessage
from pydantic import TypeAdapter

from schemas.deadletter import DeadLetterRecord
from schemas.topics import DEAD_LETTER
from services.common.metrics import (
    BATCH_SECONDS,
    consuming,
    count_batch,
    count_dead_letters,
    observe_freshness,
)
from services.common.offsets import (
    LogProbe,
    PartitionTracker,
    SeekableConsumer,
    WatermarkStore,
)
from services.common.pipeline import BatchPipeline
from services.common.records import (
    DecodedBatch,
    Envelope,
    RawRecord,
    dead_letter_record,
    decode_batch,
    raw_records,
)
from services.common.retry import never, retry_through_outage
from services.common.settings import Settings
from services.common.subscription import (
    ResumeFromState,
    batch_subscriber,
    rewind_past_the_end,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
StoreT = TypeVar("StoreT", bound=WatermarkStore)


class Summable(Protocol):
    """What ``apply`` returns: results of parts of a batch add up to the whole's."""

    def __add__(self, other: Any, /) -> Any: ...


R = TypeVar("R", bound=Summable)
Prepared = Callable[[StoreT], Awaitable[R]]  # a batch made ready to apply to a store


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


@dataclass(frozen=True)
class BatchOutcome(Generic[T, R]):
    """What one batch came to, once stored."""

    records: int
    applied: list[Envelope[T]]  # decoded and handed to ``apply``
    dead_lettered: list[DeadLetterRecord]
    skipped: int  # already reflected by the store (redelivered)
    result: R  # what ``apply`` returned
    # per partition, the offset to commit (after its last record); none for a
    # partition sent back over a gap
    commit: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Ahead(Generic[T, StoreT, R]):
    """A batch decoded and prepared before its plan, on the guess that the plan applies
    all of it in the epochs last seen; used only when the plan says so."""

    records: int
    epochs: dict[int, int]
    batch: DecodedBatch[T]
    prepared: Prepared[StoreT, R]

    def fits(self, apply: int, epochs: dict[int, int]) -> bool:
        return apply == self.records and epochs == self.epochs


class BatchConsumer(Generic[T, StoreT, R]):
    """One consumer group on one topic, on the shared skeleton (see the module doc).

    ``watermarks``: the store's watermarks as of now (asked again on every attempt: a
    replay may have switched the store); ``apply(envelopes, store)``: write the decoded
    messages; ``is_outage``: whether an error means the store is out, retried for the
    whole batch (``dependency`` names it in ``attune_dependency_up``); ``probe``: asks
    the log about gaps (and resets, where the broker may lose its log); ``prepare``:
    the CPU part of ``apply``, done ahead (its result applies the batch to a store);
    ``pipelined``: prepare the next batch while this one is applied (see the module
    doc; it needs ``prepare``)."""

    PAUSES_BEFORE_ISOLATING: tuple[float, ...] = (0.5, 2.0)
    AHEAD_SLICE = 200  # records decoded ahead between two turns of the event loop

    def __init__(
        self,
        *,
        topic: str,
        group_id: str,
        settings: Settings,
        adapter: TypeAdapter[T],
        watermarks: Callable[[], Awaitable[StoreT]],
        apply: Callable[[list[Envelope[T]], StoreT], Awaitable[R]],
        is_outage: Callable[[BaseException], bool] = never,
        dependency: str | None = None,
        probe: LogProbe | None = None,
        prepare: Callable[[list[Envelope[T]]], Awaitable[Prepared[StoreT, R]]] | None = None,
        pipelined: bool = False,
    ) -> None:
        if pipelined and prepare is None:
            raise ValueError("a pipelined consumer needs prepare")
        self.topic, self.group_id, self.settings = topic, group_id, settings
        self.adapter = adapter
        self.watermarks, self.apply, self.prepare = watermarks, apply, prepare
        self.is_outage, self.dependency = is_outage, dependency
        self.pipelined = pipelined
        self.tracker = PartitionTracker(topic, probe=probe)
        self.epochs: dict[int, int] = {}  # per partition, as last planned

    async def ahead(self, records: Sequence[RawRecord]) -> Ahead[T, StoreT, R] | None:
        """Decode and prepare ``records`` before the plan (see :class:`Ahead`), in
        slices: the batch being stored meanwhile gets its replies between two."""
        if self.prepare is None:
            return None
        epochs = {r.partition: self.epochs.get(r.partition, 0) for r in records}
        batch: DecodedBatch[T] = DecodedBatch()
        for start in range(0, len(records), self.AHEAD_SLICE):
            await asyncio.sleep(0)
            part = self._decode(records[start : start + self.AHEAD_SLICE], epochs)
            batch.accepted.extend(part.accepted)
            batch.rejected.extend(part.rejected)
        return Ahead(len(records), epochs, batch, await self.prepare(batch.accepted))

    def _decode(self, records: Sequence[RawRecord], epochs: dict[int, int]) -> DecodedBatch[T]:
        return decode_batch(
            records,
            self.adapter,
            consumer=self.group_id,
            max_bytes=self.settings.max_message_bytes,
            epochs=epochs,
        )

    async def handle(
        self,
        records: Sequence[RawRecord],
        broker: KafkaBroker,
        consumer: SeekableConsumer | None = None,
        ahead: Ahead[T, StoreT, R] | None = None,
    ) -> BatchOutcome[T, R]:
        started = time.perf_counter()
        count_batch(self.group_id, [r.topic for r in records])  # read, whatever comes of it
        raw = {(r.partition, r.offset): r for r in records}
        published: set[tuple[int, int]] = set()  # dead letters sent for this delivery

        async def dead_letter(letters: Sequence[DeadLetterRecord]) -> None:
            fresh = [d for d in letters if (d.partition, d.offset) not in published]
            await publish_dead_letters(broker, fresh)
            published.update((d.partition, d.offset) for d in fresh)

        async def attempt() -> BatchOutcome[T, R]:
            store = await self.watermarks()
            plan = await self.tracker.plan(records, store, consumer)
            epochs = {p: mark.epoch for p, mark in plan.marks.items()}
            self.epochs.update(epochs)
            if ahead is not None and ahead.fits(len(plan.apply), epochs):
                batch, prepared = ahead.batch, ahead.prepared
            else:
                batch, prepared = self._decode(plan.apply, epochs), None  # type: ignore[arg-type]
            await dead_letter(batch.rejected)
            result, failed = await self._apply_isolating_failures(batch.accepted, store, prepared)
            await dead_letter([self._unprocessable(raw, e, err) for e, err in failed])
            await store.save_watermarks(plan.marks)
            applied = [e for e in batch.accepted if all(e is not f for f, _ in failed)]
            commit: dict[int, int] = {}
            for record in records:
                if record.partition not in plan.seek:
                    commit[record.partition] = max(
                        record.offset + 1, commit.get(record.partition, 0)
                    )
            return BatchOutcome(len(records), applied, batch.rejected, plan.skipped, result, commit)

        with consuming(self.group_id, records, consumer):
            outcome = await retry_through_outage(
                attempt, self.is_outage, dependency=self.dependency
            )
        observe_freshness(self.group_id, outcome.applied)
        BATCH_SECONDS.labels(self.group_id).observe(time.perf_counter() - started)
        return outcome

    def _unprocessable(
        self, raw: dict[tuple[int, int], RawRecord], envelope: Envelope[T], error: Exception
    ) -> DeadLetterRecord:
        record = raw[(envelope.partition, envelope.offset)]
        reason = f"{type(error).__name__}: {error}"
        return dead_letter_record(record, self.group_id, "processing_failed", reason)

    async def _apply_isolating_failures(
        self, envelopes: list[Envelope[T]], store: StoreT, prepared: Prepared[StoreT, R] | None
    ) -> tuple[R, list[tuple[Envelope[T], Exception]]]:
        """``apply`` the batch. If it fails otherwise than by an outage, and again after
        short pauses (a fault that passes), find the records that fail alone by
        applying halves, recursively, in the batch's order; they are returned with
        their error, the rest is applied. When every record of a batch fails alone, the
        fault is the store's or the code's, not the records': the batch fails (it is
        redelivered) rather than sending the whole stream to the dead-letter topic.
        ``prepared``: the whole batch, already prepared."""
        for pause in (*self.PAUSES_BEFORE_ISOLATING, None):
            try:
                if prepared is not None:
                    return await prepared(store), []
                return await self.apply(envelopes, store), []
            except Exception as error:
                if self.is_outage(error) or not envelopes:
                    raise
                if pause is None:
                    break
                log.warning("%s: applying a batch failed (%r); again in %.1f s", self.topic,
                            error, pause)  # fmt: skip
                await asyncio.sleep(pause)
        result, failed = await self._isolate(envelopes, store)
        if len(envelopes) > 1 and len(failed) == len(envelopes):
            raise failed[-1][1]
        return result, failed

    async def _isolate(
        self, envelopes: list[Envelope[T]], store: StoreT
    ) -> tuple[R, list[tuple[Envelope[T], Exception]]]:
        try:
            return await self.apply(envelopes, store), []
        except Exception as error:
            if self.is_outage(error):
                raise
            if len(envelopes) == 1:
                where = f"{envelopes[0].topic}[{envelopes[0].partition}]@{envelopes[0].offset}"
                log.warning("%s cannot be applied: %r", where, error)
                return await self.apply([], store), [(envelopes[0], error)]
        middle = len(envelopes) // 2
        first, first_failed = await self._isolate(envelopes[:middle], store)
        second, second_failed = await self._isolate(envelopes[middle:], store)
        return first + second, [*first_failed, *second_failed]

    def router(
        self,
        *,
        description: str,
        on_outcome: Callable[[BatchOutcome[T, R]], None] | None = None,
    ) -> KafkaRouter:
        """A router holding this consumer's batch subscriber, ready for
        ``broker.include_router`` (before the broker starts)."""
        router = KafkaRouter()
        pipeline = None
        if self.pipelined:
            pipeline = BatchPipeline(
                self.topic, ahead=self.ahead, store=self.handle, on_stored=on_outcome
            )
        resume = ResumeFromState(self.topic, self.watermarks, self.tracker, pipeline)
        subscriber = batch_subscriber(
            router, self.topic, self.settings, self.group_id, description=description,
            listener=resume, manual_commits=pipeline is not None,
        )  # fmt: skip
        resume.subscriber = subscriber

        @subscriber
        async def on_batch(message: KafkaMessage, broker: BrokerParam) -> None:
            records = raw_records(message)
            if pipeline is not None and isinstance(message.consumer, AIOKafkaConsumer):
                await pipeline.submit(records, broker, message.consumer)
                return
            try:  # FastStream's test broker, or not pipelined
                outcome = await self.handle(records, broker, message.consumer)
            except Exception:
                if pipeline is not None:
                    await message.nack()
                raise
            if pipeline is not None:
                await message.ack()
            if on_outcome is not None:
                on_outcome(outcome)

        return router


__all__ = [
    "Ahead",
    "BatchConsumer",
    "BatchOutcome",
    "batch_subscriber",
    "publish_dead_letters",
    "rewind_past_the_end",
]
