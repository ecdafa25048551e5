"""Qdrant Edge in process: the embedded vector index.

The shard locks its folder, so one process owns it: in the embedded stack the
embedder and the query service share this object inside one process. Calls go
through a worker thread so that a large upsert or an ``optimize()`` never stalls
the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
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
    ScrollRequest,
    UpdateOperation,
)

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
    point_uuid,
    stored_item,
    tombstone_vector,
    unit_rows,
)
from services.common.vectorindex.cache import Cached, ItemCache

_PAYLOAD_INDEXES = {
    TENANT: PayloadSchemaType.Keyword,
    ITEM_ID: PayloadSchemaType.Keyword,
    TAGS: PayloadSchemaType.Keyword,
    STATE: PayloadSchemaType.Keyword,
    VERSION: PayloadSchemaType.Integer,
}


log = logging.getLogger(__name__)

ALIASES_FILE = "aliases.json"
_alias_writes = [0]  # alias files written by this process: its own switches are seen at once

_IS_LIVE = FieldCondition(key=STATE, match=MatchValue(LIVE))
_ITEMS = Filter(must=[FieldCondition(key=STATE, match=MatchAny([LIVE, DELETED]))])
_METAS = Filter(must=[FieldCondition(key=STATE, match=MatchValue(META))])


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
        tenant = item_filter.tenant
        excluded: set[Any] = {point_uuid(tenant, i) for i in item_filter.exclude_item_ids}
        must_not.append(HasIdCondition(excluded))
    return Filter(must=must, must_not=must_not or None)


def read_aliases(root: Path) -> dict[str, str]:
    """``root/aliases.json``: alias -> physical collection folder under ``root``."""
    try:
        aliases: dict[str, str] = json.loads((root / ALIASES_FILE).read_text())
    except FileNotFoundError:
        return {}
    return aliases


def write_aliases(root: Path, aliases: dict[str, str]) -> None:
    """Replace the alias file atomically (write aside, then rename)."""
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{ALIASES_FILE}.partial"
    partial.write_text(json.dumps(aliases, indent=2, sort_keys=True))
    partial.replace(root / ALIASES_FILE)
    _alias_writes[0] += 1


class EdgeVectorIndex:
    """:class:`~services.common.vectorindex.base.VectorIndex` on a Qdrant Edge shard.

    Collections are folders under ``root``; ``name`` is looked up in ``root/aliases.json``
    (no entry: the folder is ``name`` itself). When a replay points the alias at another
    collection, the index reopens on its next call, so the live process follows the
    switch without a restart: at once after a switch by this process or before a write,
    otherwise within ``alias_check_s`` (a ``stat`` of the alias file per read costs more
    than the read).

    Items' payloads are memoized (:class:`ItemCache`): the shard locks its folder, so
    every write to it goes through this object, which invalidates what it writes.
    Searches ask the shard for ids and scores only and take the payloads from the memo.
    """

    def __init__(
        self, root: Path, dimension: int, name: str = "attune_items", *, alias_check_s: float = 0.25
    ) -> None:
        self.root = root
        self.dimension = dimension
        self.name = name
        self.physical = name
        self._shard: EdgeShard | None = None
        self._aliases_seen: int | None = None
        self.alias_check_s = alias_check_s
        self._alias_checked: tuple[float, int] = (float("-inf"), -1)  # (when, _alias_writes)
        self._switching = asyncio.Lock()
        self.items = ItemCache(dimension)

    @property
    def shard(self) -> EdgeShard:
        if self._shard is None:
            raise RuntimeError("the vector index is not open: call ensure_ready() first")
        return self._shard

    async def ensure_ready(self) -> None:
        if self._shard is None:
            self.physical = read_aliases(self.root).get(self.name, self.name)
            self._aliases_seen = self._aliases_mtime()
            path = self.root / self.physical
            self._shard = await asyncio.to_thread(open_shard, path, self.dimension)

    def _aliases_mtime(self) -> int | None:
        try:
            return os.stat(self.root / ALIASES_FILE).st_mtime_ns
        except FileNotFoundError:
            return None

    async def _current(self, *, check: bool = False) -> EdgeShard:
        """The open shard, after following an alias switch if one happened."""
        now, checked = time.monotonic(), self._alias_checked
        if not check and checked[1] == _alias_writes[0] and now - checked[0] < self.alias_check_s:
            return self.shard
        self._alias_checked = (now, _alias_writes[0])
        if self._aliases_mtime() != self._aliases_seen:
            async with self._switching:
                seen = self._aliases_mtime()
                target = read_aliases(self.root).get(self.name, self.name)
                if target != self.physical:
                    log.info("collection %s now %s (was %s)", self.name, target, self.physical)
                    fresh = await asyncio.to_thread(open_shard, self.root / target, self.dimension)
                    old, self._shard, self.physical = self._shard, fresh, target
                    self.items.clear()
                    if old is not None:
                        await asyncio.to_thread(_close_shard, old)
                self._aliases_seen = seen
        return self.shard

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        if not writes:
            return
        shard = await self._current(check=True)
        points = [point_uuid(write.tenant, write.item_id).int for write in writes]
        self.items.begin_write(points)
        try:
            await asyncio.to_thread(self._apply, shard, writes)
        finally:
            self.items.end_write(points)

    def _apply(self, shard: EdgeShard, writes: Sequence[ItemWrite]) -> None:
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
            with_payload=False,
        )
        shard = await self._current()
        scored = [
            (_uuid(point.id), point.score)
            for point in await asyncio.to_thread(shard.query, request)
        ]
        found = await self._items(shard, [point for point, _ in scored])
        hits = []
        for point, score in scored:
            entry = found.get(point.int)
            if entry is not None:  # else deleted since the search
                hits.append(Hit(item=entry.item, score=float(score)))
        return hits

    async def search_ids(
        self, vector: VectorLike, item_filter: ItemFilter, limit: int
    ) -> list[tuple[str, float]]:
        hits = await self.search(vector, item_filter, limit)
        return [(hit.item.item_id, hit.score) for hit in hits]

    async def score(
        self, vector: VectorLike, item_filter: ItemFilter, item_ids: Collection[str]
    ) -> dict[str, float]:
        """Rated here, over the memoized vectors: the same cosine similarity as the
        shard's (its vectors are stored unit length) and the same conditions as its
        filter (:meth:`ItemFilter.matches`)."""
        if not item_ids:
            return {}
        tenant = item_filter.tenant
        points = [point_uuid(tenant, item_id) for item_id in item_ids]
        found = await self._items(await self._current(), points, with_vectors=True)
        passing = [
            entry
            for entry in found.values()
            if entry.vector is not None and _passes(item_filter, entry.item)
        ]
        if not passing:
            return {}
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0:
            return dict.fromkeys((entry.item.item_id for entry in passing), 0.0)
        matrix = self.items.gather(passing)
        assert matrix is not None  # every passing entry has a vector
        scores = (matrix @ (query / norm)).tolist()
        return {entry.item.item_id: score for entry, score in zip(passing, scores, strict=True)}

    async def similarities(
        self, tenant: str, item_ids: Sequence[str], queries: Sequence[VectorLike]
    ) -> Similarities:
        """Rated here, over the memoized vectors (stored unit length)."""
        points = [point_uuid(tenant, item_id) for item_id in item_ids]
        found = await self._items(await self._current(), points, with_vectors=True)
        entries = [
            entry
            for entry in (found.get(point.int) for point in points)
            if entry is not None and entry.vector is not None
        ]
        matrix = self.items.gather(entries) if entries and len(queries) else None
        if matrix is None:
            return [], np.zeros((0, len(queries)), dtype=np.float32)
        return [entry.item.item_id for entry in entries], matrix @ unit_rows(queries).T

    async def retrieve(
        self, tenant: str, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredItem]:
        if not item_ids:
            return []
        points = [point_uuid(tenant, item_id) for item_id in item_ids]
        found = await self._items(await self._current(), points, with_vectors=with_vectors)
        entries = [found[key] for key in (point.int for point in points) if key in found]
        if not with_vectors:
            return [entry.item for entry in entries]
        return [
            replace(entry.item, vector=entry.vector.tolist() if entry.vector is not None else None)
            for entry in entries
        ]

    async def _items(
        self, shard: EdgeShard, points: Sequence[uuid.UUID], *, with_vectors: bool = False
    ) -> dict[int, Cached]:
        """Live items by point id (as an int), from the memo or else the shard (then
        memoized); the ones first met are last in the order."""
        cached = self.items.get
        found: dict[int, Cached] = {}
        missing: list[uuid.UUID] = []
        for point in points:
            entry = cached(point.int)
            if entry is None or (with_vectors and entry.vector is None):
                missing.append(point)
            else:
                found[point.int] = entry
        if missing:
            epoch = self.items.epoch
            fetched = await asyncio.to_thread(_fetch_items, shard, missing, with_vectors)
            found.update(self.items.fill(fetched, epoch))
        return found

    async def count(self, tenant: str | None = None) -> int:
        request = CountRequest(exact=True, filter=_live(tenant))
        return int(await asyncio.to_thread((await self._current()).count, request))

    async def scroll(self, *, with_vectors: bool = True) -> AsyncIterator[StoredItem]:
        shard = await self._current()
        offset: Any = None
        while True:
            request = ScrollRequest(
                offset=offset, limit=512, filter=_ITEMS, with_payload=True, with_vector=with_vectors
            )
            records, offset = await asyncio.to_thread(shard.scroll, request)
            for record in records:
                yield stored_item(record.payload, record.vector)
            if offset is None:
                return

    async def read_meta(self, key: str) -> dict[str, Any] | None:
        shard = await self._current()
        ids: list[Any] = [meta_point_id(key), legacy_meta_point_id(key)]
        records = await asyncio.to_thread(shard.retrieve, ids, True, False)
        by_id = {str(record.id): record.payload for record in records}
        return meta_value([by_id.get(point) for point in ids])

    async def write_meta(self, key: str, value: dict[str, Any]) -> None:
        vector = tombstone_vector(self.dimension)
        point = Point(meta_point_id(key), vector, meta_payload(key, value))
        shard = await self._current(check=True)
        await asyncio.to_thread(shard.update, UpdateOperation.upsert_points([point]))

    async def read_metas(self, prefix: str) -> dict[str, dict[str, Any]]:
        shard = await self._current()
        payloads: list[dict[str, Any] | None] = []
        offset: Any = None
        while True:
            request = ScrollRequest(offset=offset, limit=512, filter=_METAS, with_payload=True)
            records, offset = await asyncio.to_thread(shard.scroll, request)
            payloads.extend(record.payload for record in records)
            if offset is None:
                return metas_under(prefix, payloads)

    async def write_metas(self, values: Mapping[str, dict[str, Any]]) -> None:
        if not values:
            return
        vector = tombstone_vector(self.dimension)
        points = [Point(meta_point_id(k), vector, meta_payload(k, v)) for k, v in values.items()]
        shard = await self._current(check=True)
        await asyncio.to_thread(shard.update, UpdateOperation.upsert_points(points))

    async def optimize(self) -> None:
        await asyncio.to_thread((await self._current(check=True)).optimize)

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            self.items.clear()
            await asyncio.to_thread(_close_shard, shard)


def open_shard(path: Path, dimension: int) -> EdgeShard:
    """Open the shard in ``path`` (creating it if empty) with Attune's payload indexes."""
    config = EdgeConfig(vectors=EdgeVectorParams(size=dimension, distance=Distance.Cosine))
    if path.is_dir() and any(path.iterdir()):
        shard = EdgeShard.load(str(path), config)
    else:
        path.mkdir(parents=True, exist_ok=True)
        shard = EdgeShard.create(str(path), config)
    indexed = shard.info().payload_schema
    for field_name, schema in _PAYLOAD_INDEXES.items():
        if field_name not in indexed:
            shard.update(UpdateOperation.create_field_index(field_name, schema))
    return shard


def _fetch_items(
    shard: EdgeShard, points: list[uuid.UUID], with_vectors: bool
) -> dict[int, Cached]:
    """The live items among ``points``, keyed by point id as an int."""
    found: dict[int, Cached] = {}
    ids: list[Any] = points
    for record in shard.retrieve(ids, True, with_vectors):
        payload = record.payload
        if payload and payload.get(STATE) == LIVE:
            vector = np.asarray(record.vector, dtype=np.float32) if with_vectors else None
            found[_uuid(record.id).int] = Cached(stored_item(payload), vector)
    return found


def _passes(item_filter: ItemFilter, item: StoredItem) -> bool:
    """:meth:`ItemFilter.matches` for an item of the filter's tenant, quicker when the
    filter only excludes ids (a recommendation's usual filter)."""
    if item_filter.tags_any or item_filter.metadata_equals or item_filter.metadata_ranges:
        return item_filter.matches(item)
    return item.item_id not in item_filter.exclude_item_ids


def _uuid(point: Any) -> uuid.UUID:
    return point if isinstance(point, uuid.UUID) else uuid.UUID(str(point))


def _close_shard(shard: EdgeShard) -> None:
    shard.flush()
    shard.close()
