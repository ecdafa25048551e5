"""The embedder's Kafka entry point: :func:`content_router` holds the batch subscriber
on the content topic. Include it into a broker (``broker.include_router(...)``);
services/common/runner.py runs it alone (``attune run embedder``) or with the other
services in one process (``attune dev``), sharing one Embedder and one VectorIndex.

The subscriber is thin: decode the raw records, dead-letter what is malformed, hand
the rest to :func:`services.embedder.apply.apply_content`. Offsets are committed
only after the batch is stored; an error nacks the batch and it is redelivered.
"""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import TypeAdapter

from schemas.content import ContentMessage, ContentTombstone, ContentUpsert
from schemas.topics import CONTENT
from services.common.consumer import (
    RawRecord,
    batch_subscriber,
    decode_batch,
    publish_dead_letters,
    raw_records,
)
from services.common.kafka import log_start_probe
from services.common.metrics import BATCH_SECONDS, consuming, count_batch, observe_freshness
from services.common.offsets import PartitionTracker, SeekableConsumer
from services.common.settings import Settings
from services.common.vectorindex import VectorIndex
from services.embedder.apply import ApplyStats, DocumentEmbedder, IndexWatermarks, apply_content
from services.embedder.metrics import DOCS_EMBEDDED, EMBED_SECONDS, ITEMS_APPLIED

log = logging.getLogger(__name__)

SERVICE = "embedder"

_CONTENT_ADAPTER: TypeAdapter[ContentUpsert | ContentTombstone] = TypeAdapter(ContentMessage)


def consumer_group(settings: Settings) -> str:
    """The embedder's consumer group: every embedder process shares it."""
    return f"{settings.kafka_group_prefix}-{SERVICE}"


@dataclass
class ContentConsumer:
    """The content subscriber's dependencies."""

    settings: Settings
    embedder: DocumentEmbedder
    index: VectorIndex

    @property
    def group_id(self) -> str:
        return consumer_group(self.settings)

    def __post_init__(self) -> None:
        self.tracker = PartitionTracker(CONTENT.name, probe=log_start_probe(self.settings))
        self.watermarks = IndexWatermarks(self.index, CONTENT.name)

    async def handle(
        self,
        records: Sequence[RawRecord],
        broker: KafkaBroker,
        consumer: SeekableConsumer | None = None,
    ) -> ApplyStats:
        """Skip what the index already reflects, decode, dead-letter the malformed
        records, apply the rest, then record the offsets applied."""
        started = time.perf_counter()
        with consuming(self.group_id, records, consumer):
            plan = await self.tracker.plan(records, self.watermarks, consumer)
            batch = decode_batch(
                plan.apply,  # type: ignore[arg-type]
                _CONTENT_ADAPTER,
                consumer=self.group_id,
                max_bytes=self.settings.max_message_bytes,
            )
            count_batch(self.group_id, [r.topic for r in records])
            await publish_dead_letters(broker, batch.rejected)

            stats = await apply_content(batch.accepted, self.embedder, self.index)
            await self.watermarks.save_watermarks(plan.marks)
        observe_freshness(self.group_id, batch.accepted)

        DOCS_EMBEDDED.inc(stats.embedded)
        ITEMS_APPLIED.labels("upserted").inc(stats.upserted)
        ITEMS_APPLIED.labels("deleted").inc(stats.deleted)
        ITEMS_APPLIED.labels("superseded").inc(stats.superseded)
        if stats.embedded:
            EMBED_SECONDS.observe(stats.embed_seconds)
        elapsed = time.perf_counter() - started
        BATCH_SECONDS.labels(self.group_id).observe(elapsed)
        log.debug(
            "content batch of %d in %.3f s: %d upserted, %d deleted, %d superseded, "
            "%d dead-lettered, %.3f s embedding",
            len(records), elapsed, stats.upserted, stats.deleted, stats.superseded,
            len(batch.rejected), stats.embed_seconds,
        )  # fmt: skip
        return stats


def _router_for(consumer: ContentConsumer) -> KafkaRouter:
    router = KafkaRouter()

    @batch_subscriber(
        router,
        CONTENT.name,
        consumer.settings,
        consumer.group_id,
        description="Embeds content upserts into the vector index; applies tombstones.",
    )
    async def on_content(message: KafkaMessage, broker: KafkaBroker) -> None:
        await consumer.handle(raw_records(message), broker, message.consumer)

    return router


def content_router(
    settings: Settings, embedder: DocumentEmbedder, index: VectorIndex
) -> KafkaRouter:
    """The content-topic subscriber, writing with this embedder into this index.

    Include it into a broker before the broker starts: ``broker.include_router(...)``.
    The index must be ready (``await index.ensure_ready()``).
    """
    return _router_for(ContentConsumer(settings, embedder, index))


__all__ = ["ContentConsumer", "consumer_group", "content_router"]
