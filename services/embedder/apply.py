"""The embedder's domain logic: a batch of content messages -> vector-index writes.

Plain async functions, free of Kafka: the subscriber in :mod:`.service` decodes the
raw records and hands the valid messages here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from schemas.content import ContentTombstone, ContentUpsert
from services.common.consumer import Envelope, retry_through_outage
from services.common.embedding import Vectors
from services.common.offsets import Watermark
from services.common.vectorindex import ItemDeletion, ItemPoint, ItemWrite, VectorIndex

ContentEnvelope = Envelope[ContentUpsert | ContentTombstone]
T = TypeVar("T")

DESCRIPTION_CHARS = 300
TEXT_SHA256 = "text_sha256"


class DocumentEmbedder(Protocol):
    """What the embedder needs of :class:`services.common.embedding.Embedder`."""

    async def embed_documents(self, texts: Sequence[str]) -> Vectors: ...


class IndexUnavailable(Exception):
    """The vector index did not answer (connection refused, timeout, 5xx): retried."""


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


def is_transient_index_error(error: BaseException) -> bool:
    """A vector-index error worth retrying: the server is unreachable or overloaded.

    Qdrant Edge runs in process and has no such errors. qdrant-client wraps transport
    failures (httpx) in ``ResponseHandlingException`` and reports HTTP statuses as
    ``UnexpectedResponse``; 5xx and 429 are transient, other statuses are not.
    """
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    import httpx  # imported here: only a failing server-index write gets this far

    if isinstance(error, httpx.TransportError):
        return True
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(error, ResourceExhaustedResponse):
        return True
    if isinstance(error, ResponseHandlingException):
        return isinstance(error.source, httpx.TransportError | ConnectionError | TimeoutError)
    if isinstance(error, UnexpectedResponse):
        return error.status_code is not None and (
            error.status_code >= 500 or error.status_code == 429
        )
    return False


async def with_index_retries(operation: Callable[[], Awaitable[T]]) -> T:
    """Run an index operation, retried with backoff for as long as the index is
    unreachable; any other error propagates (the batch is not committed)."""

    async def attempt() -> T:
        try:
            return await operation()
        except Exception as error:
            if is_transient_index_error(error):
                raise IndexUnavailable(f"{type(error).__name__}: {error}") from error
            raise

    return await retry_through_outage(attempt, (IndexUnavailable,), dependency="vector_index")


async def write_to_index(index: VectorIndex, writes: Sequence[ItemWrite]) -> None:
    await with_index_retries(lambda: index.apply(writes))


class IndexWatermarks:
    """The content partitions' watermarks, kept in the vector collection itself (a meta
    record beside the items), so they switch with it when a replay moves the alias."""

    def __init__(self, index: VectorIndex, topic: str) -> None:
        self.index = index
        self.key = f"watermarks/{topic}"

    async def load_watermarks(self) -> dict[int, Watermark]:
        stored = await with_index_retries(lambda: self.index.read_meta(self.key)) or {}
        return {int(p): Watermark.from_dict(mark) for p, mark in stored.items()}

    async def save_watermarks(self, marks: Mapping[int, Watermark]) -> None:
        current = await self.load_watermarks()
        current.update(marks)
        value = {str(p): mark.as_dict() for p, mark in current.items()}
        await with_index_retries(lambda: self.index.write_meta(self.key, value))


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
        await write_to_index(index, writes)

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
    "IndexUnavailable",
    "IndexWatermarks",
    "apply_content",
    "is_transient_index_error",
    "item_deletion",
    "item_point",
    "newest_per_item",
    "short_description",
    "write_to_index",
]
