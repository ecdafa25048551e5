"""A Qdrant server or Qdrant Cloud through qdrant-client.

The same client in local mode (``AsyncQdrantClient(location=":memory:")``) runs
this exact code path without a server; the contract tests use it that way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from services.common.vectorindex.base import (
    ITEM_ID,
    LIVE,
    METADATA,
    STATE,
    TAGS,
    TENANT,
    VERSION,
    Hit,
    ItemFilter,
    ItemPoint,
    ItemWrite,
    StoredItem,
    VectorLike,
    as_float_list,
    point_id,
    stored_item,
    tombstone_vector,
)

_PAYLOAD_INDEXES = {
    TENANT: models.PayloadSchemaType.KEYWORD,
    ITEM_ID: models.PayloadSchemaType.KEYWORD,
    TAGS: models.PayloadSchemaType.KEYWORD,
    STATE: models.PayloadSchemaType.KEYWORD,
    VERSION: models.PayloadSchemaType.INTEGER,
}

_IS_LIVE = models.FieldCondition(key=STATE, match=models.MatchValue(value=LIVE))


def _live(tenant: str | None) -> models.Filter:
    must: list[Any] = [_IS_LIVE]
    if tenant:
        must.append(models.FieldCondition(key=TENANT, match=models.MatchValue(value=tenant)))
    return models.Filter(must=must)


def _to_qdrant_filter(item_filter: ItemFilter) -> models.Filter:
    must: list[Any] = [
        _IS_LIVE,
        models.FieldCondition(key=TENANT, match=models.MatchValue(value=item_filter.tenant)),
    ]
    if item_filter.tags_any:
        must.append(
            models.FieldCondition(key=TAGS, match=models.MatchAny(any=list(item_filter.tags_any)))
        )
    for key, value in item_filter.metadata_equals.items():
        must.append(
            models.FieldCondition(key=f"{METADATA}.{key}", match=models.MatchValue(value=value))
        )
    for key, bounds in item_filter.metadata_ranges.items():
        must.append(
            models.FieldCondition(
                key=f"{METADATA}.{key}", range=models.Range(gte=bounds.gte, lte=bounds.lte)
            )
        )
    must_not: list[Any] = []
    if item_filter.exclude_item_ids:
        must_not.append(
            models.HasIdCondition(
                has_id=[point_id(item_filter.tenant, i) for i in item_filter.exclude_item_ids]
            )
        )
    return models.Filter(must=must, must_not=must_not or None)


class QdrantServerIndex:
    """:class:`~services.common.vectorindex.base.VectorIndex` on a Qdrant collection."""

    def __init__(self, client: AsyncQdrantClient, collection: str, dimension: int) -> None:
        self.client = client
        self.collection = collection
        self.dimension = dimension

    async def ensure_ready(self) -> None:
        if not await self.client.collection_exists(self.collection):
            await self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(
                    size=self.dimension, distance=models.Distance.COSINE
                ),
            )
        for field_name, schema in _PAYLOAD_INDEXES.items():
            await self.client.create_payload_index(self.collection, field_name, schema)

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        if not writes:
            return
        operations: list[models.UpdateOperation] = []
        for write in writes:
            vector = (
                as_float_list(write.vector)
                if isinstance(write, ItemPoint)
                else tombstone_vector(self.dimension)
            )
            point = models.PointStruct(
                id=point_id(write.tenant, write.item_id), vector=vector, payload=write.payload()
            )
            # One conditional upsert per point, all in one request: an existing point is
            # replaced only when its version is not newer.
            newer_or_same = models.Filter(
                must=[models.FieldCondition(key=VERSION, range=models.Range(lte=write.version))]
            )
            operations.append(
                models.UpsertOperation(
                    upsert=models.PointsList(points=[point], update_filter=newer_or_same)
                )
            )
        await self.client.batch_update_points(self.collection, operations, wait=True)

    async def search(self, vector: VectorLike, item_filter: ItemFilter, limit: int) -> list[Hit]:
        response = await self.client.query_points(
            self.collection,
            query=as_float_list(vector),
            query_filter=_to_qdrant_filter(item_filter),
            limit=limit,
            with_payload=True,
        )
        return [
            Hit(item=stored_item(point.payload), score=float(point.score))
            for point in response.points
        ]

    async def retrieve(
        self, tenant: str, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredItem]:
        if not item_ids:
            return []
        records = await self.client.retrieve(
            self.collection,
            [point_id(tenant, item_id) for item_id in item_ids],
            with_payload=True,
            with_vectors=with_vectors,
        )
        found = {
            record.payload[ITEM_ID]: stored_item(record.payload, record.vector)
            for record in records
            if record.payload and record.payload.get(STATE) == LIVE
        }
        return [found[item_id] for item_id in item_ids if item_id in found]

    async def count(self, tenant: str | None = None) -> int:
        result = await self.client.count(self.collection, count_filter=_live(tenant), exact=True)
        return result.count

    async def optimize(self) -> None:
        """The server builds its HNSW index by itself."""

    async def close(self) -> None:
        await self.client.close()
