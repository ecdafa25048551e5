"""How the consumers subscribe: the batch subscriber, where a consumer starts on the
partitions it is given, and the rewind of a consumer left past the end of a lost log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter

from services.common.offsets import PartitionTracker, WatermarkStore
from services.common.pipeline import BatchPipeline
from services.common.records import keep_raw
from services.common.settings import Settings

log = logging.getLogger(__name__)


class ResumeFromState(ConsumerRebalanceListener):  # type: ignore[misc]
    """Where a consumer starts on the partitions it is given: where its store's state
    ends (:meth:`PartitionTracker.resume`), not where the group committed. If the store
    cannot be read then, batches still find any gap as they come."""

    def __init__(
        self,
        topic: str,
        watermarks: Callable[[], Awaitable[WatermarkStore]],
        tracker: PartitionTracker,
        pipeline: BatchPipeline[Any, Any] | None = None,
    ) -> None:
        self.topic, self.watermarks, self.tracker = topic, watermarks, tracker
        self.pipeline = pipeline
        self.subscriber: Any = None  # set once the subscriber exists; has .consumer once started

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        if self.pipeline is not None:  # the batch being stored commits while it still can
            await self.pipeline.drain()

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        consumer = getattr(self.subscriber, "consumer", None)
        partitions = sorted(tp.partition for tp in assigned if tp.topic == self.topic)
        if consumer is None or not partitions:
            return
        try:
            store = await self.watermarks()
            await self.tracker.resume(store, consumer, partitions)
        except Exception as error:
            log.warning(
                "%s: the state's watermarks could not be read at assignment (%s); "
                "batches will find any gap as they come", self.topic, error,
            )  # fmt: skip


async def rewind_past_the_end(broker: KafkaBroker, *, every_s: float = 1.0) -> None:
    """Where the broker may lose its log (the embedded, memory-only one), run beside the
    broker's subscribers until cancelled: a consumer whose position stays past the end
    of a partition's log was left there by a log that no longer exists (it kept its
    position, or the group's committed offset, across the broker's restart). Apache
    Kafka answers a fetch there with OFFSET_OUT_OF_RANGE and the consumer resets; the
    embedded broker answers nothing, and the consumer would wait there for records that
    arrive below it. Send it to the log's start instead: its batches then find the new
    epoch (:mod:`services.common.offsets`). Seen twice in a row at the same position
    before acting, so that a high watermark not yet refreshed is not taken for one."""
    suspects: dict[tuple[int, Any], int] = {}
    while True:
        await asyncio.sleep(every_s)
        seen: dict[tuple[int, Any], int] = {}
        for subscriber in broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                try:
                    position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
                except Exception:  # being reassigned or reset: look again next time
                    continue
                if high is None or position <= high:
                    continue
                key = (id(consumer), tp)
                if suspects.get(key) != position:
                    seen[key] = position
                    continue
                log.warning(
                    "%s[%d]: position %d is past the end of the log (%d): the broker "
                    "lost it; reading the new log from its start",
                    tp.topic, tp.partition, position, high,
                )  # fmt: skip
                await consumer.seek_to_beginning(tp)
        suspects = seen


BatchHandler = Callable[..., Awaitable[None]]


def batch_subscriber(
    router: KafkaRouter,
    topic: str,
    settings: Settings,
    group_id: str,
    *,
    description: str,
    listener: ConsumerRebalanceListener | None = None,
    manual_commits: bool = False,
) -> Callable[[BatchHandler], Any]:
    """How every Attune consumer subscribes: batches of raw records, in a consumer group,
    committed only after the batch is stored (an error nacks it: it is redelivered).
    ``manual_commits``: the handler commits (and nacks) itself."""
    return router.subscriber(
        topic,
        batch=True,
        group_id=group_id,
        decoder=keep_raw,
        ack_policy=AckPolicy.MANUAL if manual_commits else AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_records=settings.consumer_max_records,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_session_timeout_ms // 3,
        title=f"{group_id}: {topic}",
        description=description,
        listener=listener,
    )


__all__ = ["BatchHandler", "ResumeFromState", "batch_subscriber", "rewind_past_the_end"]
