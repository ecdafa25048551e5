"""Rebuild the vector collection from the content topic into a fresh collection, then
move the alias to it (Qdrant: one alias update; Qdrant Edge: the alias file, which
the live process follows on its next call). The live embedder finds the new
collection's watermarks behind its position and fetches from there. On failure the
new collection is dropped and the alias is left alone."""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.topics import CONTENT
from services.common.offsets import Watermark
from services.common.replay import ReadStats, ReplayDecoder, ReplayProgress, read_topic
from services.common.settings import Settings
from services.common.vectorindex import Collections, VectorIndex
from services.common.vectorindex.outage import tolerating_outages
from services.common.vectorindex.watermarks import IndexWatermarks
from services.embedder.apply import DocumentEmbedder, apply_content
from services.embedder.subscriber import CONTENT_ADAPTER

log = logging.getLogger(__name__)


@dataclass
class EmbedderReplay:
    collection: str
    previous: str
    stats: ReadStats
    rejected: int
    dropped_previous: bool


async def rebuild_collection(
    settings: Settings,
    embedder: DocumentEmbedder,
    index: VectorIndex,
    *,
    since: datetime | None = None,
    batch_records: int = 1_000,
    progress: ReplayProgress | None = None,
) -> tuple[ReadStats, int]:
    """Apply the whole content topic to ``index`` (ready); return the read stats and how
    many records were not valid content messages. Writes wait out an index outage."""
    index = tolerating_outages(index)
    watermarks = IndexWatermarks(index, CONTENT.name)
    decoder = ReplayDecoder(CONTENT_ADAPTER, settings.max_message_bytes)

    def prepare(records: Sequence[Any]) -> Coroutine[Any, Any, None]:
        items, marks = decoder.decode(records)
        return stored(items, marks)

    async def stored(items: Sequence[Any], applied: dict[int, Watermark]) -> None:
        await apply_content(items, embedder, index)
        await watermarks.save_watermarks(applied)

    stats = await read_topic(
        settings, CONTENT.name, prepare, since=since, batch_records=batch_records,
        progress=progress,
    )  # fmt: skip
    await index.optimize()
    return stats, decoder.rejected


async def replay_embedder(
    settings: Settings,
    embedder: DocumentEmbedder,
    collections: Collections,
    *,
    since: datetime | None = None,
    drop_previous: bool = False,
    progress: ReplayProgress | None = None,
) -> EmbedderReplay:
    previous = await collections.active()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    collection = f"{settings.qdrant_collection}-r{stamp}"
    index = collections.open(collection)
    try:
        await index.ensure_ready()
        stats, rejected = await rebuild_collection(
            settings, embedder, index, since=since, progress=progress
        )
    except BaseException:
        log.error("replay failed; dropping the partial collection %s", collection)
        await index.close()
        await collections.drop(collection)
        raise
    await index.close()  # Qdrant Edge: lets the live process open it
    await collections.switch(collection)
    if drop_previous:
        await collections.drop(previous)
    return EmbedderReplay(collection, previous, stats, rejected, drop_previous)


__all__ = ["EmbedderReplay", "rebuild_collection", "replay_embedder"]
