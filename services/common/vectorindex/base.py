"""The vector-index interface Attune codes against, and the record types it speaks.

Two implementations: Qdrant Edge in process (:mod:`.edge`) and a Qdrant server or
Qdrant Cloud through qdrant-client (:mod:`.server`). Both keep one point per
(tenant, item_id), with a deterministic id, and apply a write only when its
version is at least the stored one, atomically per point (a conditional upsert),
so the newest write wins whatever the order of arrival. A deletion is kept as a
tombstone point (``state: "deleted"``) for the same reason: an older upsert that
arrives after it must not bring the item back. Reads never return tombstones.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from schemas.content import MAX_VERSION

ID_NAMESPACE = uuid.UUID("6f1c7f52-3d0e-4a51-9d43-7f3b7a7e2c11")

# Payload keys the implementations index and filter on.
TENANT = "tenant"
ITEM_ID = "item_id"
VERSION = "version"
# Tombstones are told apart by a keyword, not a bool: Qdrant Edge 0.9's Python binding
# reads MatchValue(True) as the integer 1, which never matches a JSON true.
STATE = "state"
LIVE, DELETED, META = "live", "deleted", "meta"
META_KEY, META_VALUE = "meta_key", "value"  # payload of a meta record (state: meta)
TAGS = "tags"
METADATA = "meta"

MetadataScalar = str | int | bool
VectorLike = Sequence[float] | npt.NDArray[np.float32]
Similarities = tuple[list[str], npt.NDArray[np.float32]]
"""Item ids, and each one's cosine similarity to each of some query vectors (a row per
item, a column per query)."""


def unit_rows(vectors: Sequence[VectorLike] | npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The vectors as the rows of a matrix, each scaled to unit length (zero rows stay)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def point_id(tenant: str, item_id: str) -> str:
    """The deterministic point id of an item: a UUIDv5 of tenant and item id."""
    return str(point_uuid(tenant, item_id))


@functools.lru_cache(maxsize=262_144)
def point_uuid(tenant: str, item_id: str) -> uuid.UUID:
    """:func:`point_id` as a ``uuid.UUID``, memoized: a UUIDv5 costs ~3 us and a request
    names hundreds of points (its exclusions, its candidates)."""
    return uuid.uuid5(ID_NAMESPACE, f"{tenant}/{item_id}")


def check_version(version: int) -> None:
    """Versions are compared as 64-bit floats (Qdrant's range conditions), exact only
    below 2^53: a larger one could let an older write replace a newer one."""
    if not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version {version} is outside 0..2^53 - 1")


@dataclass(frozen=True)
class ItemPoint:
    """Upsert an item's vector and payload at a version."""

    tenant: str
    item_id: str
    version: int
    vector: VectorLike
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # shown in results, not filtered

    def __post_init__(self) -> None:
        check_version(self.version)

    def payload(self) -> dict[str, Any]:
        return {
            **self.extra,
            TENANT: self.tenant,
            ITEM_ID: self.item_id,
            VERSION: self.version,
            STATE: LIVE,
            TAGS: list(self.tags),
            METADATA: dict(self.metadata),
        }


@dataclass(frozen=True)
class ItemDeletion:
    """Delete an item at a version (kept as a tombstone)."""

    tenant: str
    item_id: str
    version: int

    def __post_init__(self) -> None:
        check_version(self.version)

    def payload(self) -> dict[str, Any]:
        return {TENANT: self.tenant, ITEM_ID: self.item_id, VERSION: self.version, STATE: DELETED}


ItemWrite = ItemPoint | ItemDeletion


@dataclass(frozen=True)
class NumericRange:
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class ItemFilter:
    """What a read may return. The tenant is mandatory: no read crosses tenants."""

    tenant: str
    tags_any: Collection[str] = ()
    metadata_equals: Mapping[str, MetadataScalar] = field(default_factory=dict)
    metadata_ranges: Mapping[str, NumericRange] = field(default_factory=dict)
    exclude_item_ids: Collection[str] = ()

    def matches(self, item: StoredItem) -> bool:
        """The same conditions the engines apply, for candidates found elsewhere
        (co-occurrence, trending) and fetched by id."""
        payload = item.payload
        if item.tenant != self.tenant or item.item_id in self.exclude_item_ids:
            return False
        if self.tags_any and not set(self.tags_any) & set(payload.get(TAGS, ())):
            return False
        metadata = payload.get(METADATA, {})
        for key, wanted in self.metadata_equals.items():
            value = metadata.get(key)
            if not (value == wanted or (isinstance(value, list) and wanted in value)):
                return False
        for key, bounds in self.metadata_ranges.items():
            value = metadata.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                return False
            if (bounds.gte is not None and value < bounds.gte) or (
                bounds.lte is not None and value > bounds.lte
            ):
                return False
        return True


@dataclass(frozen=True)
class StoredItem:
    tenant: str
    item_id: str
    version: int
    payload: dict[str, Any]
    vector: list[float] | None = None


@dataclass(frozen=True)
class Hit:
    item: StoredItem
    score: float


def stored_item(payload: Mapping[str, Any] | None, vector: Any = None) -> StoredItem:
    payload = dict(payload or {})
    return StoredItem(
        tenant=payload[TENANT],
        item_id=payload[ITEM_ID],
        version=int(payload[VERSION]),
        payload=payload,
        vector=list(vector) if vector is not None else None,
    )


META_ID_NAMESPACE = uuid.UUID("3b0f5a9e-8c4d-4e57-a2d1-5c6e9f0b7d24")


def meta_point_id(key: str) -> str:
    """A record of the index's own (e.g. the consumer's watermarks), not an item: ids in
    a UUID namespace of their own, so that no (tenant, item_id) can take one."""
    return str(uuid.uuid5(META_ID_NAMESPACE, key))


def legacy_meta_point_id(key: str) -> str:
    """Where meta records were kept before they had ids of their own; the same id as the
    item ``meta``/``key``. Read (never written) so that older collections keep their
    watermarks; a payload found there counts only if it is a meta record."""
    return str(uuid.uuid5(ID_NAMESPACE, f"meta/{key}"))


def meta_value(payloads: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The value of the first of ``payloads`` that is a meta record."""
    for payload in payloads:
        if payload and payload.get(STATE) == META and isinstance(payload.get(META_VALUE), dict):
            return dict(payload[META_VALUE])
    return None


def meta_payload(key: str, value: Mapping[str, Any]) -> dict[str, Any]:
    return {STATE: META, META_KEY: key, META_VALUE: dict(value)}


def metas_under(prefix: str, payloads: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Key -> value of the meta records among ``payloads`` whose key starts with ``prefix``."""
    found: dict[str, Any] = {}
    for payload in payloads:
        key = payload.get(META_KEY) if payload else None
        if isinstance(key, str) and key.startswith(prefix):
            found[key] = meta_value([payload])
    return {key: value for key, value in found.items() if value is not None}


def as_float_list(vector: VectorLike) -> list[float]:
    tolist = getattr(vector, "tolist", None)  # numpy arrays convert much faster this way
    return [float(x) for x in (tolist() if tolist else vector)]


def tombstone_vector(dimension: int) -> list[float]:
    """A placeholder vector for tombstones (every point needs one; reads skip them)."""
    return [1.0] + [0.0] * (dimension - 1)


class VectorIndex(Protocol):
    """Async interface over one collection of item vectors."""

    dimension: int

    async def ensure_ready(self) -> None:
        """Create the collection and its payload indexes if they do not exist."""

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        """Apply upserts and deletions; per item, the highest version wins."""

    async def search(self, vector: VectorLike, item_filter: ItemFilter, limit: int) -> list[Hit]:
        """Nearest live items of the filter's tenant, best first (cosine similarity)."""

    async def search_ids(
        self, vector: VectorLike, item_filter: ItemFilter, limit: int
    ) -> list[tuple[str, float]]:
        """:meth:`search` without payloads: (item id, cosine similarity), best first."""

    async def score(
        self, vector: VectorLike, item_filter: ItemFilter, item_ids: Collection[str]
    ) -> dict[str, float]:
        """Cosine similarity of ``vector`` to each of ``item_ids`` that is a live item of
        the filter's tenant and passes the filter; the others are left out. The index
        scores them where the vectors are (no vector is shipped back)."""

    async def similarities(
        self, tenant: str, item_ids: Sequence[str], queries: Sequence[VectorLike]
    ) -> Similarities:
        """Cosine similarity of each of ``item_ids`` that is a live item with a vector to
        each of ``queries``, in the order asked; the others are left out. The index
        rates them where the vectors are (no vector is shipped back)."""

    async def retrieve(
        self, tenant: str, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredItem]:
        """Live items by id, in the order asked; missing and deleted ids are left out."""

    async def count(self, tenant: str | None = None) -> int:
        """Number of live items, of one tenant or of all."""

    def scroll(self, *, with_vectors: bool = True) -> AsyncIterator[StoredItem]:
        """Every item, tombstones included (``payload["state"]``), in no set order."""

    async def read_meta(self, key: str) -> dict[str, Any] | None:
        """A record of the index's own, stored beside the items (never returned by reads)."""

    async def write_meta(self, key: str, value: dict[str, Any]) -> None: ...

    async def read_metas(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every record of the index's own whose key starts with ``prefix``, by key."""

    async def write_metas(self, values: Mapping[str, dict[str, Any]]) -> None:
        """Write several records of the index's own, each under its key, in one request;
        the records not named are left as they are."""

    async def optimize(self) -> None:
        """Build search indexes after a bulk load (a no-op where the engine does it)."""

    async def close(self) -> None: ...


class Collections(Protocol):
    """The physical collections behind the alias readers use: a replay builds a new one,
    then switches the alias in one step."""

    async def active(self) -> str:
        """The physical collection the alias points at."""

    def open(self, physical: str) -> VectorIndex:
        """An index over one physical collection (call ensure_ready)."""

    async def switch(self, physical: str) -> str:
        """Point the alias at ``physical``; return the previous target."""

    async def drop(self, physical: str) -> None: ...


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
    "point_id",
    "point_uuid",
    "unit_rows",
]
