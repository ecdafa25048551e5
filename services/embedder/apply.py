"""The embedder's domain logic: a batch of content messages -> vector-index writes.

Plain async functions, free of Kafka: the subscriber (:mod:`.subscriber`) decodes the
raw records and hands the valid messages here. The index it is given waits out an
outage itself (services/common/vectorindex/outage.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.content import ContentTombstone, ContentUpsert
from services.common.embedding import Vectors
from services.common.records import Envelope
from services.common.vectorindex import ItemDeletion, ItemPoint, ItemWrite, VectorIndex

ContentEnvelope = Envelope[ContentUpsert | ContentTombstone]

DESCRIPTION_CHARS = 300
TEXT_SHA256 = "text_sha256"


class DocumentEmbedder(Protocol):
    """What the embedder needs of :class:`services.common.embedding.Embedder`."""

    async def embed_documents(self, texts: Sequence[str]) -> Vectors: ...


@dataclass(frozen=True)
class ApplyStats:
    """What one batch did to the index.

    ``upserted`` and ``deleted`` count the writes sent; the index still ignores any
    of them that is older than the version it holds. ``superseded`` counts messages
    skipped because a newer one for the same item was in the same batch.
    """

    upserted: int = 0
    deleted: int = 0
    superseded: int = 0
    embedded: int = 0
    embed_seconds: float = 0.0

    def __add__(self, other: ApplyStats) -> ApplyStats:
        return ApplyStats(
            self.upserted + other.upserted,
            self.deleted + other.deleted,
            self.superseded + other.superseded,
            self.embedded + other.embedded,
            self.embed_seconds + other.embed_seconds,
        )


def newest_per_item(envelopes: Iterable[ContentEnvelope]) -> tuple[list[ContentEnvelope], int]:
    """The newest message per (tenant, item_id), in batch order, and how many were
    superseded. On equal versions the later record (higher offset) wins, as it would
    in the index."""
    newest: dict[tuple[str, str], ContentEnvelope] = {}
    seen = 0
    for envelope in envelopes:
        seen += 1
        message = envelope.message
        key = (message.tenant, message.item_id)
        current = newest.get(key)
        if current is None or message.effective_version >= current.message.effective_version:
            newest.pop(key, None)  # re-insert: the winner keeps its own batch position
            newest[key] = envelope
    return list(newest.values()), seen - len(newest)


def short_description(text: str | None, limit: int = DESCRIPTION_CHARS) -> str | None:
    """The description shown in results: at most ``limit`` characters."""
    if not text:
        return None
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "\u2026"


def item_point(message: ContentUpsert, vector: Sequence[float]) -> ItemPoint:
    """The index point of an upsert: vector, filterable tags/metadata, display fields."""
    return ItemPoint(
        tenant=message.tenant,
        item_id=message.item_id,
        version=message.effective_version,
        vector=vector,
        tags=list(message.tags),
        metadata=dict(message.metadata),
        extra={
            "title": message.title,
            "updated_at": message.updated_at.isoformat(),
            "description": short_description(message.description),
            # What the vector encodes: lets a digest compare two collections without
            # comparing floats that vary in their last bits with the batch they came in.
            TEXT_SHA256: hashlib.sha256(message.text_to_embed().encode()).hexdigest(),
        },
    )


def item_deletion(message: ContentTombstone) -> ItemDeletion:
    return ItemDeletion(
        tenant=message.tenant, item_id=message.item_id, version=message.effective_version
    )


async def apply_content(
    envelopes: Sequence[ContentEnvelope],
    embedder: DocumentEmbedder,
    index: VectorIndex,
) -> ApplyStats:
    """Embed the newest upsert of each item, turn tombstones into deletions, and write
    them all to the index in one call. Idempotent: replaying a batch gives the same
    index, and an older version never replaces a newer one."""
    winners, superseded = newest_per_item(envelopes)
    upserts = [e.message for e in winners if isinstance(e.message, ContentUpsert)]

    vector_of: dict[tuple[str, str], list[float]] = {}
    embed_seconds = 0.0
    if upserts:
        started = time.perf_counter()
        vectors = await embedder.embed_documents([m.text_to_embed() for m in upserts])
        embed_seconds = time.perf_counter() - started
        if len(vectors) != len(upserts):
            raise RuntimeError(f"{len(vectors)} vectors for {len(upserts)} texts")
        for upsert, row in zip(upserts, vectors, strict=True):
            vector_of[(upsert.tenant, upsert.item_id)] = row.tolist()

    writes: list[ItemWrite] = []
    for envelope in winners:
        message = envelope.message
        if isinstance(message, ContentUpsert):
            writes.append(item_point(message, vector_of[(message.tenant, message.item_id)]))
        else:
            writes.append(item_deletion(message))
    if writes:
        await index.apply(writes)

    return ApplyStats(
        upserted=len(upserts),
        deleted=len(writes) - len(upserts),
        superseded=superseded,
        embedded=len(upserts),
        embed_seconds=embed_seconds,
    )


__all__ = [
    "ApplyStats",
    "ContentEnvelope",
    "DocumentEmbedder",
    "apply_content",
    "item_deletion",
    "item_point",
    "newest_per_item",
    "short_description",
]
