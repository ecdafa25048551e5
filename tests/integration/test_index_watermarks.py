"""The embedder's watermarks in the vector collection (one meta record per partition,
and the one-record format of earlier releases still read), on both engines."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client.models import PointStruct

from schemas.topics import CONTENT
from services.common.offsets import Watermark
from services.common.vectorindex import VectorIndex
from services.common.vectorindex.edge import EdgeVectorIndex
from services.common.vectorindex.server import QdrantServerIndex
from services.common.vectorindex.watermarks import IndexWatermarks
from tests.integration.test_vector_index_contract import DIM, EAST, index, item

pytestmark = pytest.mark.integration

__all__ = ["index"]  # the fixture, over both engines


async def test_meta_records_are_read_by_key_prefix_and_written_together(
    index: VectorIndex,
) -> None:
    await index.write_metas({"watermarks/t/0": {"offset": 1}, "watermarks/t/1": {"offset": 2}})
    await index.write_metas({"watermarks/t/1": {"offset": 3}})
    await index.write_meta("watermarks/t", {"0": 9})
    await index.write_meta("watermarks/u/0", {"offset": 4})
    await index.apply([item("watermarks/t/2", 1, EAST, tenant="meta")])

    assert await index.read_metas("watermarks/t/") == {
        "watermarks/t/0": {"offset": 1},
        "watermarks/t/1": {"offset": 3},
    }
    assert await index.count() == 1


def _marks(offsets: dict[int, int], epoch: int = 0) -> dict[str, dict[str, int | None]]:
    return {str(p): Watermark(epoch, offset).as_dict() for p, offset in offsets.items()}


@pytest.mark.parametrize("legacy_id", [True, False], ids=["oldest-id", "one-record"])
async def test_watermarks_of_the_one_record_format_are_read_and_the_further_mark_counts(
    index: VectorIndex, legacy_id: bool
) -> None:
    """A rolling upgrade: the collection holds one record for all partitions (where the
    previous versions kept it), which old replicas may still be writing."""
    key = f"watermarks/{CONTENT.name}"
    old = _marks({0: 10, 1: 20, 2: 30})
    if legacy_id:
        await _write_at_legacy_id(index, key, old)
    else:
        await index.write_meta(key, old)
    watermarks = IndexWatermarks(index, CONTENT.name)

    assert {p: m.offset for p, m in (await watermarks.load_watermarks()).items()} == {
        0: 10, 1: 20, 2: 30,
    }  # fmt: skip

    await watermarks.save_watermarks({0: Watermark(0, 15), 3: Watermark(0, 5)})
    await index.write_meta(key, _marks({0: 12, 1: 25, 2: 30}))  # an old replica, later
    await watermarks.save_watermarks({2: Watermark(1, 0)})  # a new epoch after a reset

    loaded = await watermarks.load_watermarks()
    assert {p: (m.epoch, m.offset) for p, m in loaded.items()} == {
        0: (0, 15), 1: (0, 25), 2: (1, 0), 3: (0, 5),
    }  # fmt: skip


async def _write_at_legacy_id(index: VectorIndex, key: str, value: dict[str, Any]) -> None:
    from services.common.vectorindex.base import legacy_meta_point_id, meta_payload

    if isinstance(index, EdgeVectorIndex):
        from qdrant_edge import Point, UpdateOperation

        point = Point(legacy_meta_point_id(key), [0.0] * DIM, meta_payload(key, value))
        (await index._current()).update(UpdateOperation.upsert_points([point]))
    else:
        assert isinstance(index, QdrantServerIndex)
        await index.client.upsert(
            index.collection,
            [PointStruct(id=legacy_meta_point_id(key), vector=[0.0] * DIM,
                         payload=meta_payload(key, value))],
        )  # fmt: skip
