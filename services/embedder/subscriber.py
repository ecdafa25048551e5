"""The embedder's Kafka entry: the content topic's batch subscriber, on the shared
skeleton (services/common/consumer.py). It supplies only the contract it decodes,
where its watermarks live (in the vector collection) and its apply step,
:func:`services.embedder.apply.apply_content`; it counts the embedder's own metrics."""

from __future__ import annotations

from faststream.kafka import KafkaRouter
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter

from schemas.content import ContentMessage, ContentTombstone, ContentUpsert
from schemas.topics import CONTENT
from services.common.consumer import BatchConsumer, BatchOutcome
from services.common.offsets import LogProbe
from services.common.records import Envelope
from services.common.settings import Settings
from services.common.vectorindex import VectorIndex
from services.common.vectorindex.outage import tolerating_outages
from services.common.vectorindex.watermarks import IndexWatermarks
from services.embedder.apply import ApplyStats, DocumentEmbedder, apply_content

CONTENT_ADAPTER: TypeAdapter[ContentUpsert | ContentTombstone] = TypeAdapter(ContentMessage)

DOCS_EMBEDDED = Counter(
    "attune_embedder_docs_embedded",
    "Documents embedded (upserts after the newest-version-per-item pass).",
)
ITEMS_APPLIED = Counter(
    "attune_embedder_items",
    "Content messages by outcome: upserted or deleted in the index, or superseded by a "
    "newer version of the same item in the same batch.",
    ["outcome"],
)
EMBED_SECONDS = Histogram(
    "attune_embedder_embed_duration_seconds",
    "Time spent embedding the documents of one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

ContentConsumer = BatchConsumer[ContentUpsert | ContentTombstone, IndexWatermarks, ApplyStats]


def consumer_group(settings: Settings) -> str:
    """The embedder's consumer group: every embedder process shares it."""
    return f"{settings.kafka_group_prefix}-embedder"


def content_consumer(
    settings: Settings,
    embedder: DocumentEmbedder,
    index: VectorIndex,
    *,
    probe: LogProbe | None = None,
) -> ContentConsumer:
    """The content consumer, writing with this embedder into this index (ready). Its
    writes wait out an index outage; the batch's embeddings are not computed again."""
    index = tolerating_outages(index)
    watermarks = IndexWatermarks(index, CONTENT.name)

    async def current_watermarks() -> IndexWatermarks:
        return watermarks

    async def apply(
        envelopes: list[Envelope[ContentUpsert | ContentTombstone]], _: IndexWatermarks
    ) -> ApplyStats:
        return await apply_content(envelopes, embedder, index)

    return BatchConsumer(
        topic=CONTENT.name,
        group_id=consumer_group(settings),
        settings=settings,
        adapter=CONTENT_ADAPTER,
        watermarks=current_watermarks,
        apply=apply,
        probe=probe,
    )


def count_applied(outcome: BatchOutcome[ContentUpsert | ContentTombstone, ApplyStats]) -> None:
    stats = outcome.result
    DOCS_EMBEDDED.inc(stats.embedded)
    ITEMS_APPLIED.labels("upserted").inc(stats.upserted)
    ITEMS_APPLIED.labels("deleted").inc(stats.deleted)
    ITEMS_APPLIED.labels("superseded").inc(stats.superseded)
    if stats.embedded:
        EMBED_SECONDS.observe(stats.embed_seconds)


def content_router(
    settings: Settings,
    embedder: DocumentEmbedder,
    index: VectorIndex,
    *,
    probe: LogProbe | None = None,
) -> KafkaRouter:
    """The content-topic subscriber; include it into a broker before the broker starts."""
    consumer = content_consumer(settings, embedder, index, probe=probe)
    return consumer.router(
        description="Embeds content upserts into the vector index; applies tombstones.",
        on_outcome=count_applied,
    )


__all__ = [
    "CONTENT_ADAPTER",
    "ContentConsumer",
    "consumer_group",
    "content_consumer",
    "content_router",
]
