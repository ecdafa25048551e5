"""The vector index: one interface, Qdrant Edge (embedded) and Qdrant server behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.common.vectorindex.base import (
    Collections,
    Hit,
    ItemDeletion,
    ItemFilter,
    ItemPoint,
    ItemWrite,
    NumericRange,
    Similarities,
    StoredItem,
    VectorIndex,
    VectorLike,
    point_id,
    unit_rows,
)

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

    from services.common.settings import Settings


def _qdrant_client(settings: Settings) -> AsyncQdrantClient:
    from qdrant_client import AsyncQdrantClient

    if settings.qdrant_url is None:
        raise ValueError("ATTUNE_QDRANT_URL is required when ATTUNE_VECTOR_INDEX=qdrant")
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return AsyncQdrantClient(url=str(settings.qdrant_url), api_key=api_key)


def open_vector_index(settings: Settings, dimension: int) -> VectorIndex:
    """The index the settings select (not yet opened: call ``ensure_ready``)."""
    if settings.vector_index == "edge":
        from services.common.vectorindex.edge import EdgeVectorIndex

        return EdgeVectorIndex(settings.vector_index_path, dimension, settings.qdrant_collection)

    from services.common.vectorindex.server import QdrantServerIndex

    return QdrantServerIndex(_qdrant_client(settings), settings.qdrant_collection, dimension)


def open_collections(settings: Settings, dimension: int) -> Collections:
    """The collections behind the alias the settings name (for a replay)."""
    if settings.vector_index == "edge":
        from services.common.vectorindex.edge_collections import EdgeCollections

        return EdgeCollections(settings.vector_index_path, dimension, settings.qdrant_collection)

    from services.common.vectorindex.server import ServerCollections

    return ServerCollections(_qdrant_client(settings), settings.qdrant_collection, dimension)


__all__ = [
    "Collections",
    "Hit",
    "ItemDeletion",
    "ItemFilter",
    "ItemPoint",
    "ItemWrite",
    "NumericRange",
    "Similarities",
    "StoredItem",
    "VectorIndex",
    "VectorLike",
    "open_collections",
    "open_vector_index",
    "point_id",
    "unit_rows",
]
