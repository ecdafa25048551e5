"""One contract, two engines: Qdrant Edge in process, and qdrant-client (local mode
standing in for a Qdrant server, through the same code path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from services.common.vectorindex import (
    Collections,
    ItemDeletion,
    ItemFilter,
    ItemPoint,
    NumericRange,
    VectorIndex,
)
from services.common.vectorindex.edge import EdgeVectorIndex
from services.common.vectorindex.edge_collections import EdgeCollections
from services.common.vectorindex.server import QdrantServerIndex, ServerCollections

pytestmark = pytest.mark.integration

DIM = 4
EAST, NORTH, WEST = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]


@pytest.fixture(params=["edge", "qdrant-client"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    engine: VectorIndex
    if request.param == "edge":
        engine = EdgeVectorIndex(tmp_path / "shard", DIM)
    else:
        engine = QdrantServerIndex(AsyncQdrantClient(location=":memory:"), "items", DIM)
    await engine.ensure_ready()
    yield engine
    await engine.close()


def item(
    item_id: str, version: int, vector: list[float], tenant: str = "acme", **kw: object
) -> ItemPoint:
    return ItemPoint(tenant=tenant, item_id=item_id, version=version, vector=vector, **kw)  # type: ignore[arg-type]


async def test_upsert_then_retrieve_by_id(index: VectorIndex) -> None:
    await index.apply(
        [item("a", 1, EAST, tags=["x"], metadata={"year": 1999}, extra={"title": "A"})]
    )

    [stored] = await index.retrieve("acme", ["a"], with_vectors=True)

    assert (stored.tenant, stored.item_id, stored.version) == ("acme", "a", 1)
    assert stored.payload["tags"] == ["x"]
    assert stored.payload["meta"] == {"year": 1999}
    assert stored.payload["title"] == "A"
    assert stored.vector == pytest.approx(EAST)


async def test_retrieve_keeps_the_order_asked_and_skips_unknown_ids(index: VectorIndex) -> None:
    await index.apply([item("a", 1, EAST), item("b", 1, NORTH)])

    found = await index.retrieve("acme", ["b", "missing", "a"])

    assert [s.item_id for s in found] == ["b", "a"]


async def test_newest_version_wins_whatever_the_order_of_arrival(index: VectorIndex) -> None:
    await index.apply([item("a", 5, EAST, extra={"title": "v5"})])
    await index.apply([item("a", 3, NORTH, extra={"title": "v3"})])  # late, older

    [stored] = await index.retrieve("acme", ["a"], with_vectors=True)
    assert stored.version == 5
    assert stored.payload["title"] == "v5"
    assert stored.vector == pytest.approx(EAST)

    await index.apply([item("a", 7, NORTH, extra={"title": "v7"})])
    [stored] = await index.retrieve("acme", ["a"])
    assert (stored.version, stored.payload["title"]) == (7, "v7")


async def test_newest_wins_within_one_batch(index: VectorIndex) -> None:
    await index.apply([item("a", 2, EAST), item("a", 1, NORTH)])

    [stored] = await index.retrieve("acme", ["a"])
    assert stored.version == 2


async def test_delete_is_a_tombstone_older_writes_cannot_undo(index: VectorIndex) -> None:
    await index.apply([item("a", 1, EAST), item("b", 1, NORTH)])
    await index.apply([ItemDeletion(tenant="acme", item_id="a", version=3)])

    assert await index.retrieve("acme", ["a"]) == []
    assert await index.count("acme") == 1
    hits = await index.search(EAST, ItemFilter(tenant="acme"), limit=10)
    assert [h.item.item_id for h in hits] == ["b"]

    await index.apply([item("a", 2, EAST)])  # older than the tombstone: stays deleted
    assert await index.retrieve("acme", ["a"]) == []

    await index.apply([item("a", 4, EAST)])  # newer: the item is back
    assert [s.version for s in await index.retrieve("acme", ["a"])] == [4]


async def test_an_old_tombstone_does_not_delete_a_newer_item(index: VectorIndex) -> None:
    await index.apply([item("a", 5, EAST)])
    await index.apply([ItemDeletion(tenant="acme", item_id="a", version=4)])

    assert [s.version for s in await index.retrieve("acme", ["a"])] == [5]


async def test_search_ranks_by_cosine_similarity(index: VectorIndex) -> None:
    await index.apply([item("east", 1, EAST), item("north", 1, NORTH), item("west", 1, WEST)])

    hits = await index.search([0.9, 0.1, 0.0, 0.0], ItemFilter(tenant="acme"), limit=3)

    assert [h.item.item_id for h in hits] == ["east", "north", "west"]
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].score == pytest.approx(0.9 / (0.82**0.5), abs=1e-4)


async def test_search_with_payload_filters(index: VectorIndex) -> None:
    await index.apply(
        [
            item("a", 1, EAST, tags=["drama"], metadata={"year": 1990, "lang": "en"}),
            item("b", 1, EAST, tags=["comedy"], metadata={"year": 2005, "lang": "en"}),
            item("c", 1, EAST, tags=["drama", "war"], metadata={"year": 2010, "lang": "fr"}),
        ]
    )

    async def ids(**kw: object) -> set[str]:
        hits = await index.search(EAST, ItemFilter(tenant="acme", **kw), limit=10)  # type: ignore[arg-type]
        return {h.item.item_id for h in hits}

    assert await ids(tags_any=["drama"]) == {"a", "c"}
    assert await ids(tags_any=["war", "comedy"]) == {"b", "c"}
    assert await ids(metadata_equals={"lang": "en"}) == {"a", "b"}
    assert await ids(metadata_ranges={"year": NumericRange(gte=2000)}) == {"b", "c"}
    assert await ids(metadata_ranges={"year": NumericRange(gte=2000, lte=2006)}) == {"b"}
    assert await ids(tags_any=["drama"], metadata_equals={"lang": "fr"}) == {"c"}
    assert await ids(exclude_item_ids=["a", "b"]) == {"c"}


async def test_search_ids_is_search_without_payloads(index: VectorIndex) -> None:
    await index.apply([item("east", 1, EAST), item("north", 1, NORTH), item("west", 1, WEST)])
    query, where = [0.9, 0.1, 0.0, 0.0], ItemFilter(tenant="acme", exclude_item_ids=["north"])

    found = await index.search_ids(query, where, limit=3)

    assert found == [(h.item.item_id, h.score) for h in await index.search(query, where, 3)]
    assert [i for i, _ in found] == ["east", "west"]


async def test_score_rates_the_ids_asked_that_pass_the_filter(index: VectorIndex) -> None:
    await index.apply(
        [
            item("a", 1, EAST, tags=["drama"]),
            item("b", 1, NORTH, tags=["comedy"]),
            item("c", 1, WEST, tags=["drama"]),
            item("d", 1, EAST, tags=["drama"]),
            item("e", 1, EAST, tags=["drama"], tenant="other"),
        ]
    )
    await index.apply([ItemDeletion(tenant="acme", item_id="d", version=2)])
    query = [0.6, 0.8, 0.0, 0.0]

    everything = await index.score(
        query, ItemFilter(tenant="acme"), ["a", "b", "c", "d", "e", "zz"]
    )
    dramas = await index.score(
        query,
        ItemFilter(tenant="acme", tags_any=["drama"], exclude_item_ids=["c"]),
        ["a", "b", "c"],
    )

    assert everything == {
        "a": pytest.approx(0.6, abs=1e-4),
        "b": pytest.approx(0.8, abs=1e-4),
        "c": pytest.approx(-0.6, abs=1e-4),
    }
    assert dramas == {"a": pytest.approx(0.6, abs=1e-4)}
    assert await index.score(query, ItemFilter(tenant="acme"), []) == {}


async def test_similarities_rate_live_items_against_each_query(index: VectorIndex) -> None:
    await index.apply(
        [
            item("a", 1, EAST),
            item("b", 1, [0.0, 2.0, 0.0, 0.0]),  # stored unit length
            item("d", 1, EAST),
            item("e", 1, EAST, tenant="other"),
        ]
    )
    await index.apply([ItemDeletion(tenant="acme", item_id="d", version=2)])

    rated, matrix = await index.similarities(
        "acme", ["b", "zz", "d", "e", "a"], [[0.6, 0.8, 0.0, 0.0], [-2.0, 0.0, 0.0, 0.0]]
    )

    assert rated == ["b", "a"]  # in the order asked, the missing and deleted left out
    assert matrix.tolist() == [
        [pytest.approx(0.8, abs=1e-4), pytest.approx(0.0, abs=1e-4)],
        [pytest.approx(0.6, abs=1e-4), pytest.approx(-1.0, abs=1e-4)],
    ]
    assert (await index.similarities("acme", [], [EAST]))[0] == []


async def test_reads_see_every_write_at_once(index: VectorIndex) -> None:
    """Reads right after a write see it, whatever an implementation memoizes."""
    await index.apply([item("a", 1, EAST, tags=["x"], extra={"title": "Old"})])
    assert [s.payload["title"] for s in await index.retrieve("acme", ["a"])] == ["Old"]
    assert [h.item.payload["title"] for h in await index.search(EAST, ItemFilter("acme"), 1)] == [
        "Old"
    ]

    await index.apply([item("a", 2, EAST, tags=["y"], extra={"title": "New"})])
    [stored] = await index.retrieve("acme", ["a"])
    [hit] = await index.search(EAST, ItemFilter("acme"), 1)
    assert (stored.version, stored.payload["title"], stored.payload["tags"]) == (2, "New", ["y"])
    assert (hit.item.version, hit.item.payload["title"]) == (2, "New")

    await index.apply([ItemDeletion(tenant="acme", item_id="a", version=3)])
    assert await index.retrieve("acme", ["a"]) == []
    assert await index.search(EAST, ItemFilter("acme"), 1) == []


async def test_tenants_never_see_each_other(index: VectorIndex) -> None:
    await index.apply(
        [item("same-id", 1, EAST, tenant="t1"), item("same-id", 1, NORTH, tenant="t2")]
    )
    await index.apply([item("only-t2", 1, EAST, tenant="t2")])

    hits = await index.search(EAST, ItemFilter(tenant="t1"), limit=10)
    assert [(h.item.tenant, h.item.item_id) for h in hits] == [("t1", "same-id")]
    [stored] = await index.retrieve("t2", ["same-id"], with_vectors=True)
    assert stored.vector == pytest.approx(NORTH)
    assert await index.retrieve("t1", ["only-t2"]) == []


async def test_count_live_items(index: VectorIndex) -> None:
    assert await index.count() == 0
    await index.apply([item("a", 1, EAST), item("b", 1, EAST), item("c", 1, EAST, tenant="other")])
    await index.apply([ItemDeletion(tenant="acme", item_id="b", version=2)])

    assert await index.count("acme") == 1
    assert await index.count("other") == 1
    assert await index.count() == 2


async def test_optimize_keeps_results(index: VectorIndex) -> None:
    await index.apply([item(f"i{n}", 1, [1.0, n / 100, 0.0, 0.0]) for n in range(50)])
    before = [h.item.item_id for h in await index.search(EAST, ItemFilter(tenant="acme"), 5)]

    await index.optimize()

    after = [h.item.item_id for h in await index.search(EAST, ItemFilter(tenant="acme"), 5)]
    assert after == before


async def test_edge_shard_survives_reopening(tmp_path: Path) -> None:
    first = EdgeVectorIndex(tmp_path / "shard", DIM)
    await first.ensure_ready()
    await first.apply([item("a", 1, EAST)])
    await first.close()

    second = EdgeVectorIndex(tmp_path / "shard", DIM)
    await second.ensure_ready()
    try:
        assert [s.item_id for s in await second.retrieve("acme", ["a"])] == ["a"]
    finally:
        await second.close()


async def test_scroll_returns_every_item_and_tombstone_but_no_meta_record(
    index: VectorIndex,
) -> None:
    await index.apply([item("a", 1, EAST), item("b", 1, NORTH)])
    await index.apply([ItemDeletion(tenant="acme", item_id="b", version=2)])
    await index.write_meta("watermarks/test", {"0": 5})

    scrolled = {(s.item_id, s.payload["state"], s.version) async for s in index.scroll()}

    assert scrolled == {("a", "live", 1), ("b", "deleted", 2)}


async def test_meta_records_are_kept_apart_from_items(index: VectorIndex) -> None:
    assert await index.read_meta("watermarks/x") is None
    await index.write_meta("watermarks/x", {"0": {"epoch": 0, "offset": 7}})
    await index.write_meta("watermarks/x", {"0": {"epoch": 0, "offset": 9}})

    assert await index.read_meta("watermarks/x") == {"0": {"epoch": 0, "offset": 9}}
    assert await index.count() == 0
    assert await index.search(EAST, ItemFilter(tenant="acme"), limit=5) == []


@pytest.fixture(params=["edge", "qdrant-client"])
async def collections(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[VectorIndex, Collections]]:
    """A live index read through the alias, and the collections behind it."""
    if request.param == "edge":
        live: VectorIndex = EdgeVectorIndex(tmp_path / "vectors", DIM, "items")
        admin: Collections = EdgeCollections(tmp_path / "vectors", DIM, "items")
    else:
        client = AsyncQdrantClient(location=":memory:")
        live = QdrantServerIndex(client, "items", DIM)
        admin = ServerCollections(client, "items", DIM)
    await live.ensure_ready()
    yield live, admin
    await live.close()


async def test_switching_the_alias_moves_readers_to_the_new_collection(
    collections: tuple[VectorIndex, Collections],
) -> None:
    live, admin = collections
    await live.apply([item("old", 1, EAST)])
    old = await admin.active()

    fresh = admin.open("items-r2")
    await fresh.ensure_ready()
    await fresh.apply([item("new", 1, EAST)])
    await fresh.close()
    assert await admin.switch("items-r2") == old

    assert [s.item_id for s in await live.retrieve("acme", ["old", "new"])] == ["new"]
    await live.apply([item("later", 1, NORTH)])  # writes follow the alias too
    assert await live.count("acme") == 2

    with pytest.raises(ValueError, match="active"):
        await admin.drop("items-r2")
    await admin.drop(old)
    assert await admin.active() == "items-r2"


@pytest.mark.parametrize("item_first", [True, False], ids=["item-first", "meta-first"])
async def test_an_item_cannot_take_the_id_of_a_meta_record(
    index: VectorIndex, item_first: bool
) -> None:
    """Tenant ``meta`` and item ``watermarks/attune.content`` once named the same point as
    the embedder's watermarks: the embedder then failed every batch, or the item was lost."""
    clash = item("watermarks/attune.content", 1, EAST, tenant="meta")
    watermarks = {"0": {"epoch": 0, "offset": 3}}
    if item_first:
        await index.apply([clash])
        await index.write_meta("watermarks/attune.content", watermarks)
    else:
        await index.write_meta("watermarks/attune.content", watermarks)
        await index.apply([clash])

    assert await index.read_meta("watermarks/attune.content") == watermarks
    [stored] = await index.retrieve("meta", ["watermarks/attune.content"])
    assert (stored.tenant, stored.version) == ("meta", 1)
    assert await index.count("meta") == 1


async def test_watermarks_kept_where_older_versions_wrote_them_are_still_read(
    tmp_path: Path,
) -> None:
    from qdrant_edge import Point, UpdateOperation

    from services.common.vectorindex.base import legacy_meta_point_id, meta_payload

    index = EdgeVectorIndex(tmp_path / "shard", DIM)
    await index.ensure_ready()
    old = Point(
        legacy_meta_point_id("watermarks/t"), [0.0] * DIM, meta_payload("watermarks/t", {"0": 1})
    )
    (await index._current()).update(UpdateOperation.upsert_points([old]))

    assert await index.read_meta("watermarks/t") == {"0": 1}
    await index.write_meta("watermarks/t", {"0": 2})
    assert await index.read_meta("watermarks/t") == {"0": 2}
    await index.close()


async def test_versions_at_the_top_of_the_range_keep_their_order(index: VectorIndex) -> None:
    top = 2**53 - 1
    await index.apply([item("a", top, EAST, extra={"title": "top"})])
    await index.apply([item("a", top - 1, NORTH, extra={"title": "below"})])  # late, older

    [stored] = await index.retrieve("acme", ["a"])
    assert (stored.version, stored.payload["title"]) == (top, "top")


def test_versions_from_2_to_the_53_cannot_be_written() -> None:
    """As floats, 2^53 + 3 rounds to 2^53 + 4: a write at 2^53 + 3 would replace one at
    2^53 + 4 (both engines did)."""
    with pytest.raises(ValueError, match="outside"):
        item("a", 2**53 + 3, EAST)
    with pytest.raises(ValueError, match="outside"):
        ItemDeletion(tenant="acme", item_id="a", version=2**53)


async def test_scores_stay_right_while_a_small_memo_rolls_over(tmp_path: Path) -> None:
    """Edge keeps vectors in a memo; a request that finds some there and reads the rest
    may make it start again: every score must still be its own item's."""
    import random

    from services.common.vectorindex.cache import ItemCache

    rng = random.Random(3)
    index = EdgeVectorIndex(tmp_path / "shard", DIM)
    await index.ensure_ready()
    index.items = ItemCache(DIM, capacity=5)
    vectors = {f"i{n}": [rng.uniform(-1, 1) for _ in range(DIM)] for n in range(20)}
    await index.apply([item(i, 1, v) for i, v in vectors.items()])
    query = [0.3, -0.2, 0.9, 0.1]

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)

    for _ in range(60):
        ids = rng.sample(sorted(vectors), 4)
        scores = await index.score(query, ItemFilter(tenant="acme"), ids)
        assert scores == {i: pytest.approx(cosine(query, vectors[i]), abs=1e-5) for i in ids}
    await index.close()
