"""A Qdrant server or Qdrant Cloud through qdrant-client.

The same client in local mode (``AsyncQdrantClient(location=":memory:")``) runs
this exact code path without a server; the contract tests use it that way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from services.common.vectorindex.base import (
    DELETED,
    ITEM_ID,
    LIVE,
    META,
    METADATA,
    STATE,
    TAGS,
    TENANT,
    VERSION,
    Hit,
    ItemFilter,
    ItemPoint,
    ItemWrite,
    Similarities,
    StoredItem,
    VectorLike,
    as_float_list,
    legacy_meta_point_id,
    meta_payload,
    meta_point_id,
    meta_value,
    metas_under,
    point_id,
    stored_item,
    tombstone_vector,
    unit_rows,
)

_PAYLOAD_INDEXES = {
    TENANT: models.PayloadSchemaType.KEYWORD,
    ITEM_ID: models.PayloadSchemaType.KEYWORD,
    TAGS: models.PayloadSchemaType.KEYWORD,
    STATE: models.PayloadSchemaType.KEYWORD,
    VERSION: models.PayloadSchemaType.INTEGER,
}

_IS_LIVE = models.FieldCondition(key=STATE, match=models.MatchValue(value=LIVE))
_ITEMS = models.Filter(
    must=[models.FieldCondition(key=STATE, match=models.MatchAny(any=[LIVE, DELETED]))]
)
_METAS = models.Filter(must=[models.FieldCondition(key=STATE, match=models.MatchValue(value=META))])


def _live(tenant: str | None) -> models.Filter:
    must: list[Any] = [_IS_LIVE]
    if tenant:
        must.append(models.FieldCondition(key=TENANT, match=models.MatchValue(value=tenant)))
    return models.Filter(must=must)


def _to_qdrant_filter(item_filter: ItemFilter, only: list[str] | None = None) -> models.Filter:
    """The filter as Qdrant conditions; ``only``: point ids it is restricted to."""
    must: list[Any] = [
        _IS_LIVE,
        models.FieldCondition(key=TENANT, match=models.MatchValue(value=item_filter.tenant)),
    ]
    if only is not None:
        must.append(models.HasIdCondition(has_id=list(only)))
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


async def _aliases(client: AsyncQdrantClient) -> dict[str, str]:
    response = await client.get_aliases()
    return {a.alias_name: a.collection_name for a in response.aliases}


async def _create_collection(client: AsyncQdrantClient, name: str, dimension: int) -> None:
    await client.create_collection(
        name,
        vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
    )
    for field_name, schema in _PAYLOAD_INDEXES.items():
        await client.create_payload_index(name, field_name, schema)


class QdrantServerIndex:
    """:class:`~services.common.vectorindex.base.VectorIndex` on a Qdrant collection.

    ``collection`` is an alias: the first start creates ``{collection}-1`` behind it, and
    a replay builds another collection and switches the alias (:class:`ServerCollections`).
    Qdrant resolves the alias on every request, so the switch is atomic for readers.
    """

    def __init__(
        self,
        client: AsyncQdrantClient,
        collection: str,
        dimension: int,
        *,
        behind_alias: bool = True,
        owns_client: bool = True,
    ) -> None:
        self.client = client
        self.collection = collection
        self.dimension = dimension
        self.behind_alias = behind_alias
        self.owns_client = owns_client

    async def ensure_ready(self) -> None:
        if self.collection in await _aliases(self.client):
            return
        if await self.client.collection_exists(self.collection):
            return  # a collection of that name (created without an alias): use it as it is
        if not self.behind_alias:
            await _create_collection(self.client, self.collection, self.dimension)
            return
        physical = f"{self.collection}-1"
        await _create_collection(self.client, physical, self.dimension)
        await self.client.update_collection_aliases(
            [
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(
                        collection_name=physical, alias_name=self.collection
                    )
                )
            ]
        )

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

    async def search_ids(
        self, vector: VectorLike, item_filter: ItemFilter, limit: int
    ) -> list[tuple[str, float]]:
        response = await self.client.query_points(
            self.collection,
            query=as_float_list(vector),
            query_filter=_to_qdrant_filter(item_filter),
            limit=limit,
            with_payload=[ITEM_ID],
        )
        return [
            (str(point.payload[ITEM_ID]), float(point.score))
            for point in response.points
            if point.payload
        ]

    async def score(
        self, vector: VectorLike, item_filter: ItemFilter, item_ids: Collection[str]
    ) -> dict[str, float]:
        if not item_ids:
            return {}
        named = {point_id(item_filter.tenant, item_id): item_id for item_id in item_ids}
        response = await self.client.query_points(
            self.collection,
            query=as_float_list(vector),
            query_filter=_to_qdrant_filter(item_filter, only=list(named)),
            limit=len(named),
            with_payload=False,
        )
        return {
            named[str(point.id)]: float(point.score)
            for point in response.points
            if str(point.id) in named
        }

    async def similarities(
        self, tenant: str, item_ids: Sequence[str], queries: Sequence[VectorLike]
    ) -> Similarities:
        found = [i for i in await self.retrieve(tenant, item_ids, with_vectors=True) if i.vector]
        if not found or not len(queries):
            return [], np.zeros((0, len(queries)), dtype=np.float32)
        rows = unit_rows([item.vector or () for item in found])
        return [item.item_id for item in found], rows @ unit_rows(queries).T

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

    async def scroll(self, *, with_vectors: bool = True) -> AsyncIterator[StoredItem]:
        offset: Any = None
        while True:
            records, offset = await self.client.scroll(
                self.collection,
                scroll_filter=_ITEMS,
                limit=512,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            for record in records:
                yield stored_item(record.payload, record.vector)
            if offset is None:
                return

    async def read_meta(self, key: str) -> dict[str, Any] | None:
        ids = [meta_point_id(key), legacy_meta_point_id(key)]
        records = await self.client.retrieve(self.collection, ids)
        by_id = {str(record.id): record.payload for record in records}
        return meta_value([by_id.get(point) for point in ids])

    async def write_meta(self, key: str, value: dict[str, Any]) -> None:
        point = models.PointStruct(
            id=meta_point_id(key),
            vector=tombstone_vector(self.dimension),
            payload=meta_payload(key, value),
        )
        await self.client.upsert(self.collection, [point], wait=True)

    async def read_metas(self, prefix: str) -> dict[str, dict[str, Any]]:
        payloads: list[dict[str, Any] | None] = []
        offset: Any = None
        while True:
            records, offset = await self.client.scroll(
                self.collection, scroll_filter=_METAS, limit=512, offset=offset, with_payload=True
            )
            payloads.extend(record.payload for record in records)
            if offset is None:
                return metas_under(prefix, payloads)

    async def write_metas(self, values: Mapping[str, dict[str, Any]]) -> None:
        if not values:
            return
        vector = tombstone_vector(self.dimension)
        points = [
            models.PointStruct(id=meta_point_id(key), vector=vector, payload=meta_payload(key, v))
            for key, v in values.items()
        ]
        await self.client.upsert(self.collection, points, wait=True)

    async def optimize(self) -> None:
        """The server builds its HNSW index by itself."""

    async def close(self) -> None:
        if self.owns_client:
            await self.client.close()


class ServerCollections:
    """Physical collections behind an alias on a Qdrant server, for a replay."""

    def __init__(self, client: AsyncQdrantClient, name: str, dimension: int) -> None:
        self.client, self.name, self.dimension = client, name, dimension

    async def active(self) -> str:
        return (await _aliases(self.client)).get(self.name, self.name)

    def open(self, physical: str) -> QdrantServerIndex:
        return QdrantServerIndex(
            self.client, physical, self.dimension, behind_alias=False, owns_client=False
        )

    async def switch(self, physical: str) -> str:
        """Move the alias in one request (Qdrant applies the operations atomically)."""
        old = await self.active()
        operations: list[Any] = []
        if self.name in await _aliases(self.client):
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.name))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=physical, alias_name=self.name)
            )
        )
        await self.client.update_collection_aliases(operations)
        return old

    async def drop(self, physical: str) -> None:
        if physical == await self.active():
            raise ValueError(f"{physical} is the active collection")
        await self.client.delete_collection(physical)
