"""Batches in a pipeline of depth two: while the store applies batch N, batch N+1 is
fetched, decoded and prepared (see ``BatchConsumer(pipelined=True)``).

FastStream hands a subscriber one batch at a time and fetches the next only when the
handler returns. :meth:`BatchPipeline.submit` therefore does the CPU work ahead of
the store first (``ahead``), then waits for batch N, then starts storing N+1 in a
task of its own and returns, so that FastStream fetches N+2 while the store works.
What stays exact:

- order: a batch is stored only after the one before it is, plan included (the plan
  reads the watermarks N saved); what ``ahead`` prepared is only a guess that the
  plan confirms or replaces (see ``BatchConsumer.handle``);
- offsets: the subscriber does not commit (``AckPolicy.MANUAL``); each batch commits
  the offsets after its own records once it is stored, never a later batch's, and
  after the batch before it committed;
- failure: a batch that fails rewinds its partitions to its first records (what a
  nack does); the batch fetched behind it is dropped, unapplied and uncommitted, and
  its partitions rewound too, so both come again, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from services.common.records import RawRecord

log = logging.getLogger(__name__)

G = TypeVar("G")  # what is prepared ahead of the store


class Stored(Protocol):
    """What a stored batch tells the pipeline: where each partition is to be committed."""

    @property
    def commit(self) -> Mapping[int, int]: ...


OutcomeT = TypeVar("OutcomeT", bound=Stored)


class CommittingConsumer(Protocol):
    """The parts of AIOKafkaConsumer the pipeline uses."""

    def seek(self, partition: Any, offset: int) -> None: ...

    async def commit(self, offsets: Any = None) -> None: ...


@dataclass
class _InFlight:
    records: Sequence[RawRecord]
    stored: asyncio.Task[bool]


class BatchPipeline(Generic[G, OutcomeT]):
    """One per subscriber. ``ahead(records)``: the CPU work done while the store still
    works on the batch before; ``store(records, broker, consumer, ahead)``: the whole
    batch (plan, apply, watermarks), raising when it fails; ``on_stored``: told of each
    stored batch, before its commit."""

    def __init__(
        self,
        topic: str,
        *,
        ahead: Callable[[Sequence[RawRecord]], Awaitable[G]],
        store: Callable[[Sequence[RawRecord], Any, Any, G], Awaitable[OutcomeT]],
        on_stored: Callable[[OutcomeT], None] | None = None,
    ) -> None:
        self.topic = topic
        self.ahead, self.store, self.on_stored = ahead, store, on_stored
        self.in_flight: _InFlight | None = None
        self.committing: asyncio.Task[None] | None = None  # the last batch's commit

    async def submit(
        self, records: Sequence[RawRecord], broker: Any, consumer: CommittingConsumer
    ) -> None:
        """Prepare ``records``, wait for the batch before, start storing these."""
        prepared = await self.ahead(records)
        previous, self.in_flight = self.in_flight, None
        if previous is not None and not await asyncio.shield(previous.stored):
            log.warning(
                "%s: the batch before failed; dropping the %d records fetched behind it "
                "and fetching both again", self.topic, len(records),
            )  # fmt: skip
            self._rewind(consumer, [*previous.records, *records])
            return
        task = asyncio.create_task(self._stored(records, broker, consumer, prepared))
        self.in_flight = _InFlight(records, task)

    async def drain(self) -> None:
        """Wait for the batch being stored and its commit, if any (before partitions
        are revoked)."""
        if self.in_flight is not None:
            await asyncio.shield(self.in_flight.stored)
        if self.committing is not None:
            await asyncio.shield(self.committing)

    async def _stored(
        self, records: Sequence[RawRecord], broker: Any, consumer: CommittingConsumer, prepared: G
    ) -> bool:
        try:
            outcome = await self.store(records, broker, consumer, prepared)
        except Exception:
            log.exception("%s: storing a batch failed; it is fetched again", self.topic)
            self._rewind(consumer, records)
            return False
        if self.on_stored is not None:
            self.on_stored(outcome)
        # The next batch need not wait for this commit, only commit after it.
        self.committing = asyncio.create_task(
            self._commit(consumer, outcome.commit, self.committing)
        )
        return True

    async def _commit(
        self,
        consumer: CommittingConsumer,
        commit: Mapping[int, int],
        before: asyncio.Task[None] | None,
    ) -> None:
        if before is not None:
            await before
        if not commit:
            return
        try:
            await consumer.commit({TopicPartition(self.topic, p): o for p, o in commit.items()})
        except Exception as error:  # the store's watermarks still say what is applied
            log.warning("%s: committing %s failed: %r", self.topic, dict(commit), error)

    def _rewind(self, consumer: CommittingConsumer, records: Sequence[RawRecord]) -> None:
        """Where a nack would: each partition to its first record among ``records``."""
        first: dict[int, int] = {}
        for record in records:
            first[record.partition] = min(record.offset, first.get(record.partition, record.offset))
        for partition, offset in first.items():
            # No longer assigned: its next owner starts at the committed offset.
            with contextlib.suppress(IllegalStateError):
                consumer.seek(TopicPartition(self.topic, partition), offset)


__all__ = ["BatchPipeline", "CommittingConsumer", "Stored"]
