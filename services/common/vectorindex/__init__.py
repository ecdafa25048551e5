"""The vector index: one interface, Qdrant Edge (embedded) and Qdrant server behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.common.vectorindex.base import (
    Hit,
    ItemDeletion,
    ItemFilter,
    ItemPoint,
    ItemWrite,
    NumericRange,
    StoredItem,
    VectorIndex,
    VectorLike,
    point_id,
)

if TYPE_CHECKING:
    from services.common.settings import Settings


def open_vector_index(settings: Settings, dimension: int) -> VectorIndex:
    """The index the settings select (not yet opened: call ``ensure_ready``)."""
    if settings.vector_index == "edge":
        from services.common.vectorindex.edge import EdgeVectorIndex

        return EdgeVectorIndex(settings.vector_index_path, dimension)

    from qdrant_client import AsyncQdrantClient

    from services.common.vectorindex.server import QdrantServerIndex

    if settings.qdrant_url is None:
        raise ValueError("ATTUNE_QDRANT_URL is required when ATTUNE_VECTOR_INDEX=qdrant")
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = AsyncQdrantClient(url=str(settings.qdrant_url), api_key=api_key)
    return QdrantServerIndex(client, settings.qdrant_collection, dimension)


__all__ = [
    "Hit",
    "ItemDeletion",
    "ItemFilter",
    "ItemPoint",
    "ItemWrite",
    "NumericRange",
    "StoredItem",
    "VectorIndex",
    "VectorLike",
    "open_vector_index",
    "point_id",
]
