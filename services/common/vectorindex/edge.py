"""Qdrant Edge in process: the embedded vector index.

The shard locks its folder, so one process owns it: in the embedded stack the
embedder and the query service share this object inside one process. Calls go
through a worker thread so that a large upsert or an ``optimize()`` never stalls
the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HasIdCondition,
    MatchAny,
    MatchValue,
    PayloadSchemaType,
    Point,
    Query,
    QueryRequest,
    RangeFloat,
    UpdateOperation,
)

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
    TENANT: PayloadSchemaType.Keyword,
    ITEM_ID: PayloadSchemaType.Keyword,
    TAGS: PayloadSchemaType.Keyword,
    STATE: PayloadSchemaType.Keyword,
    VERSION: PayloadSchemaType.Integer,
}


_IS_LIVE = FieldCondition(key=STATE, match=MatchValue(LIVE))


def _live(tenant: str | None) -> Filter:
    must: list[Any] = [_IS_LIVE]
    if tenant:
        must.append(FieldCondition(key=TENANT, match=MatchValue(tenant)))
    return Filter(must=must)


def _to_edge_filter(item_filter: ItemFilter) -> Filter:
    must: list[Any] = [_IS_LIVE, FieldCondition(key=TENANT, match=MatchValue(item_filter.tenant))]
    if item_filter.tags_any:
        must.append(FieldCondition(key=TAGS, match=MatchAny(list(item_filter.tags_any))))
    for key, value in item_filter.metadata_equals.items():
        must.append(FieldCondition(key=f"{METADATA}.{key}", match=MatchValue(value)))
    for key, bounds in item_filter.metadata_ranges.items():
        must.append(
            FieldCondition(
                key=f"{METADATA}.{key}", range=RangeFloat(gte=bounds.gte, lte=bounds.lte)
            )
        )
    must_not: list[Any] = []
    if item_filter.exclude_item_ids:
        excluded: set[Any] = {point_id(item_filter.tenant, i) for i in item_filter.exclude_item_ids}
        must_not.append(HasIdCondition(excluded))
    return Filter(must=must, must_not=must_not or None)


class EdgeVectorIndex:
    """:class:`~services.common.vectorindex.base.VectorIndex` on a Qdrant Edge shard."""

    def __init__(self, path: Path, dimension: int) -> None:
        self.path = path
        self.dimension = dimension
        self._shard: EdgeShard | None = None

    @property
    def shard(self) -> EdgeShard:
        if self._shard is None:
            raise RuntimeError("the vector index is not open: call ensure_ready() first")
        return self._shard

    async def ensure_ready(self) -> None:
        if self._shard is None:
            self._shard = await asyncio.to_thread(self._open)

    def _open(self) -> EdgeShard:
        config = EdgeConfig(vectors=EdgeVectorParams(size=self.dimension, distance=Distance.Cosine))
        if self.path.is_dir() and any(self.path.iterdir()):
            shard = EdgeShard.load(str(self.path), config)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            shard = EdgeShard.create(str(self.path), config)
        indexed = shard.info().payload_schema
        for field_name, schema in _PAYLOAD_INDEXES.items():
            if field_name not in indexed:
                shard.update(UpdateOperation.create_field_index(field_name, schema))
        return shard

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        if writes:
            await asyncio.to_thread(self._apply, writes)

    def _apply(self, writes: Sequence[ItemWrite]) -> None:
        shard = self.shard
        for write in writes:
            vector = (
                as_float_list(write.vector)
                if isinstance(write, ItemPoint)
                else tombstone_vector(self.dimension)
            )
            point = Point(point_id(write.tenant, write.item_id), vector, write.payload())
            # Conditional upsert: an existing point is replaced only when its version is
            # not newer; a new point is always inserted.
            newer_or_same = Filter(
                must=[FieldCondition(key=VERSION, range=RangeFloat(lte=float(write.version)))]
            )
            shard.update(UpdateOperation.upsert_points([point], condition=newer_or_same))

    async def search(self, vector: VectorLike, item_filter: ItemFilter, limit: int) -> list[Hit]:
        request = QueryRequest(
            limit=limit,
            query=Query.Nearest(as_float_list(vector)),
            filter=_to_edge_filter(item_filter),
            with_payload=True,
        )
        scored = await asyncio.to_thread(self.shard.query, request)
        return [Hit(item=stored_item(point.payload), score=float(point.score)) for point in scored]

    async def retrieve(
        self, tenant: str, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredItem]:
        if not item_ids:
            return []
        ids: list[Any] = [point_id(tenant, item_id) for item_id in item_ids]
        records = await asyncio.to_thread(self.shard.retrieve, ids, True, with_vectors)
        found = {
            record.payload[ITEM_ID]: stored_item(record.payload, record.vector)
            for record in records
            if record.payload and record.payload.get(STATE) == LIVE
        }
        return [found[item_id] for item_id in item_ids if item_id in found]

    async def count(self, tenant: str | None = None) -> int:
        request = CountRequest(exact=True, filter=_live(tenant))
        return int(await asyncio.to_thread(self.shard.count, request))

    async def optimize(self) -> None:
        await asyncio.to_thread(self.shard.optimize)

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            await asyncio.to_thread(shard.flush)
            await asyncio.to_thread(shard.close)
