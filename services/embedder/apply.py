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


@dataclass
class ItemChange:
    """What one batch does to one item, its messages taken in order: ``newest`` is the
    newest message after the item's last tombstone without a version (None: none came
    after one); ``erase`` says such a tombstone came; ``floor`` is the highest version
    among the messages before it (None: none had one)."""

    newest: ContentEnvelope | None = None
    erase: bool = False
    floor: int | None = None


def _version(message: ContentUpsert | ContentTombstone) -> int | None:
    return message.effective_version if isinstance(message, ContentUpsert) else message.version


def _higher(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def changes_per_item(
    envelopes: Iterable[ContentEnvelope],
) -> tuple[dict[tuple[str, str], ItemChange], int]:
    """Per (tenant, item_id), in the batch order of each item's last message, what the
    batch does to it; and how many messages were superseded within the batch. On equal
    versions the later record (higher offset) wins, as it would in the index."""
    changes: dict[tuple[str, str], ItemChange] = {}
    seen = 0
    for envelope in envelopes:
        seen += 1
        message = envelope.message
        key = (message.tenant, message.item_id)
        change = changes.pop(key, None) or ItemChange()  # re-inserted: its latest position
        changes[key] = change
        version, newest = _version(message), change.newest
        if version is None:  # a tombstone without a version: it erases what came before
            before = _version(newest.message) if newest is not None else None
            change.newest, change.erase, change.floor = None, True, _higher(change.floor, before)
        elif newest is None or version >= (_version(newest.message) or 0):
            change.newest = envelope
    return changes, seen - len(changes)


def newest_per_item(envelopes: Iterable[ContentEnvelope]) -> tuple[list[ContentEnvelope], int]:
    """The newest message per (tenant, item_id), in batch order, and how many were
    superseded (for batches whose tombstones all carry a version)."""
    changes, superseded = changes_per_item(envelopes)
    return [c.newest for c in changes.values() if c.newest is not None], superseded


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
    assert message.version is not None  # one without is resolved by apply_content
    return ItemDeletion(tenant=message.tenant, item_id=message.item_id, version=message.version)


async def _stored_versions(
    index: VectorIndex, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The version of each of ``keys`` the index holds live."""
    by_tenant: dict[str, list[str]] = {}
    for tenant, item_id in keys:
        by_tenant.setdefault(tenant, []).append(item_id)
    stored: dict[tuple[str, str], int] = {}
    for tenant, item_ids in by_tenant.items():
        for item in await index.retrieve(tenant, item_ids):
            stored[(tenant, item.item_id)] = item.version
    return stored


async def _resolve(
    changes: dict[tuple[str, str], ItemChange], index: VectorIndex
) -> list[ContentEnvelope | ItemDeletion]:
    """One write per item: the newest message, unless a tombstone without a version came
    and it is older than what that tombstone erased (the stored version, or a version
    seen before it in the batch): then a deletion at that version."""
    erasing = [key for key, change in changes.items() if change.erase]
    stored = await _stored_versions(index, erasing) if erasing else {}
    writes: list[ContentEnvelope | ItemDeletion] = []
    for (tenant, item_id), change in changes.items():
        newest = change.newest
        if change.erase:
            erased = _higher(stored.get((tenant, item_id)), change.floor)
            if erased is not None and (newest is None or (_version(newest.message) or 0) < erased):
                writes.append(ItemDeletion(tenant=tenant, item_id=item_id, version=erased))
                continue
        if newest is not None:
            writes.append(newest)
    return writes


async def apply_content(
    envelopes: Sequence[ContentEnvelope],
    embedder: DocumentEmbedder,
    index: VectorIndex,
) -> ApplyStats:
    """Embed the newest upsert of each item, turn tombstones into deletions, and write
    them all to the index in one call. Idempotent: replaying a batch gives the same
    index, and an older version never replaces a newer one. A tombstone without a
    version deletes the version the index holds (read first), as if the batch's
    messages were applied one by one."""
    changes, superseded = changes_per_item(envelopes)
    chosen = await _resolve(changes, index)
    upserts = [
        w.message
        for w in chosen
        if isinstance(w, Envelope) and isinstance(w.message, ContentUpsert)
    ]

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
    for write in chosen:
        if isinstance(write, ItemDeletion):
            writes.append(write)
        elif isinstance(write.message, ContentUpsert):
            message = write.message
            writes.append(item_point(message, vector_of[(message.tenant, message.item_id)]))
        else:
            writes.append(item_deletion(write.message))
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
    "ItemChange",
    "apply_content",
    "changes_per_item",
    "item_deletion",
    "item_point",
    "newest_per_item",
    "short_description",
]
