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
