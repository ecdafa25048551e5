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
import shutil
from collections.abc import AsyncIterator, Sequence
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
    ScrollRequest,
    UpdateOperation,
)

from services.common.vectorindex.base import (
    DELETED,
    ITEM_ID,
    LIVE,
    META_VALUE,
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
    meta_payload,
    meta_point_id,
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


log = logging.getLogger(__name__)

ALIASES_FILE = "aliases.json"

_IS_LIVE = FieldCondition(key=STATE, match=MatchValue(LIVE))
_ITEMS = Filter(must=[FieldCondition(key=STATE, match=MatchAny([LIVE, DELETED]))])


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


class EdgeVectorIndex:
    """:class:`~services.common.vectorindex.base.VectorIndex` on a Qdrant Edge shard.

    Collections are folders under ``root``; ``name`` is looked up in ``root/aliases.json``
    (no entry: the folder is ``name`` itself). When a replay points the alias at another
    collection, the index reopens on its next call, so the live process follows the
    switch without a restart.
    """

    def __init__(self, root: Path, dimension: int, name: str = "attune_items") -> None:
        self.root = root
        self.dimension = dimension
        self.name = name
        self.physical = name
        self._shard: EdgeShard | None = None
        self._aliases_seen: int | None = None
        self._switching = asyncio.Lock()

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

    async def _current(self) -> EdgeShard:
        """The open shard, after following an alias switch if one happened."""
        if self._aliases_mtime() != self._aliases_seen:
            async with self._switching:
                seen = self._aliases_mtime()
                target = read_aliases(self.root).get(self.name, self.name)
                if target != self.physical:
                    log.info("collection %s now %s (was %s)", self.name, target, self.physical)
                    fresh = await asyncio.to_thread(open_shard, self.root / target, self.dimension)
                    old, self._shard, self.physical = self._shard, fresh, target
                    if old is not None:
                        await asyncio.to_thread(_close_shard, old)
                self._aliases_seen = seen
        return self.shard

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        if writes:
            await asyncio.to_thread(self._apply, await self._current(), writes)

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
            with_payload=True,
        )
        scored = await asyncio.to_thread((await self._current()).query, request)
        return [Hit(item=stored_item(point.payload), score=float(point.score)) for point in scored]

    async def retrieve(
        self, tenant: str, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredItem]:
        if not item_ids:
            return []
        ids: list[Any] = [point_id(tenant, item_id) for item_id in item_ids]
        shard = await self._current()
        records = await asyncio.to_thread(shard.retrieve, ids, True, with_vectors)
        found = {
            record.payload[ITEM_ID]: stored_item(record.payload, record.vector)
            for record in records
            if record.payload and record.payload.get(STATE) == LIVE
        }
        return [found[item_id] for item_id in item_ids if item_id in found]

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
        records = await asyncio.to_thread(shard.retrieve, [meta_point_id(key)], True, False)
        return dict(records[0].payload[META_VALUE]) if records and records[0].payload else None

    async def write_meta(self, key: str, value: dict[str, Any]) -> None:
        vector = tombstone_vector(self.dimension)
        point = Point(meta_point_id(key), vector, meta_payload(key, value))
        shard = await self._current()
        await asyncio.to_thread(shard.update, UpdateOperation.upsert_points([point]))

    async def optimize(self) -> None:
        await asyncio.to_thread((await self._current()).optimize)

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
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


def _close_shard(shard: EdgeShard) -> None:
    shard.flush()
    shard.close()


class EdgeCollections:
    """Physical collections behind an alias, for a replay (see :mod:`.base`)."""

    def __init__(self, root: Path, dimension: int, name: str) -> None:
        self.root, self.dimension, self.name = root, dimension, name

    async def active(self) -> str:
        return read_aliases(self.root).get(self.name, self.name)

    def open(self, physical: str) -> EdgeVectorIndex:
        return EdgeVectorIndex(self.root, self.dimension, physical)

    async def switch(self, physical: str) -> str:
        aliases = read_aliases(self.root)
        old = aliases.get(self.name, self.name)
        aliases[self.name] = physical
        write_aliases(self.root, aliases)
        return old

    async def drop(self, physical: str, *, wait_s: float = 30.0) -> None:
        """Delete a collection's folder once no process holds it (a live process lets go
        of it when it follows the alias switch)."""
        if physical == await self.active():
            raise ValueError(f"{physical} is the active collection")
        path = self.root / physical
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                shard = await asyncio.to_thread(open_shard, path, self.dimension)
            except Exception:  # still locked by a live process
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
                continue
            await asyncio.to_thread(shard.close)
            break
        await asyncio.to_thread(shutil.rmtree, path)
