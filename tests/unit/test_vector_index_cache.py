"""The vector index's memo of items: filled by reads, emptied by writes, never stale."""

from __future__ import annotations

import numpy as np

from services.common.vectorindex import StoredItem
from services.common.vectorindex.cache import Cached, ItemCache


def entry(item_id: str, vector: list[float] | None = None) -> Cached:
    item = StoredItem("acme", item_id, 1, {"tenant": "acme", "item_id": item_id})
    return Cached(item, None if vector is None else np.asarray(vector, dtype=np.float32))


def test_a_read_fills_the_memo_and_vectors_become_rows_of_one_matrix() -> None:
    cache = ItemCache(dimension=2)

    kept = cache.fill({1: entry("a", [1.0, 0.0]), 2: entry("b", [0.0, 1.0]), 3: entry("c")}, 0)

    assert [cache.get(p).item.item_id for p in (1, 2, 3)] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert kept[3].row == -1
    assert kept[3].vector is None
    rows = [kept[1].row, kept[2].row]
    assert cache.matrix[rows].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert kept[2].vector is not None
    assert kept[2].vector.tolist() == [0.0, 1.0]


def test_a_read_that_overlapped_a_write_is_not_remembered() -> None:
    cache = ItemCache(dimension=2)
    before = cache.epoch
    cache.begin_write([1])
    assert cache.fill({1: entry("a")}, cache.epoch) == {1: entry("a")}  # returned, not kept
    cache.end_write([1])

    cache.fill({1: entry("a")}, before)  # the read began before the write

    assert cache.get(1) is None
    cache.fill({1: entry("a")}, cache.epoch)
    assert cache.get(1) is not None


def test_a_write_forgets_the_points_it_touches() -> None:
    cache = ItemCache(dimension=2)
    cache.fill({1: entry("a"), 2: entry("b")}, cache.epoch)

    cache.begin_write([1])
    cache.end_write([1])

    assert cache.get(1) is None
    assert cache.get(2) is not None


def test_past_its_capacity_the_memo_starts_again() -> None:
    cache = ItemCache(dimension=2, capacity=3)
    cache.fill({n: entry(f"i{n}", [1.0, float(n)]) for n in range(3)}, cache.epoch)

    kept = cache.fill({9: entry("i9", [0.0, 9.0])}, cache.epoch)

    assert len(cache) == 1
    assert cache.get(0) is None
    assert kept[9].row == 0
    assert cache.matrix[0].tolist() == [0.0, 9.0]


def test_a_rollover_never_rewrites_a_vector_handed_out_before_it() -> None:
    cache = ItemCache(dimension=2, capacity=4)
    first = cache.fill({n: entry(f"i{n}", [1.0, float(n)]) for n in range(3)}, cache.epoch)

    # Within the same request: the memo is full, starts again, and fills new rows.
    later = cache.fill({n: entry(f"i{n}", [float(n), -1.0]) for n in range(10, 13)}, cache.epoch)

    assert [first[n].vector.tolist() for n in range(3)] == [[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]  # type: ignore[union-attr]
    mixed = [first[2], later[11], first[0], later[12]]
    gathered = cache.gather(mixed)
    assert gathered is not None
    assert gathered.tolist() == [[1.0, 2.0], [11.0, -1.0], [1.0, 0.0], [12.0, -1.0]]


def test_churn_through_a_small_memo_always_gives_each_items_own_vector() -> None:
    rng = np.random.default_rng(7)
    truth = {n: rng.normal(size=4).astype(np.float32) for n in range(50)}
    cache = ItemCache(dimension=4, capacity=16)
    for _ in range(200):
        points = [int(p) for p in rng.choice(50, size=6, replace=False)]
        known = {p: cache.get(p) for p in points}
        missing = {
            p: Cached(entry(f"i{p}").item, truth[p]) for p, hit in known.items() if hit is None
        }
        if rng.random() < 0.2:
            cache.begin_write(points[:1])
            cache.end_write(points[:1])
        kept = cache.fill(missing, cache.epoch)
        entries = [known[p] or kept[p] for p in points]
        gathered = cache.gather(entries)  # type: ignore[arg-type]
        assert gathered is not None
        np.testing.assert_array_equal(gathered, np.stack([truth[p] for p in points]))
