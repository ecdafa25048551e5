"""The content partitions' watermarks, kept in the vector collection itself (meta
records beside the items), so that they switch with it when a replay moves the alias
(see services/common/offsets.py).

One record per partition: embedder replicas sharing a collection each save only the
partitions they own, so no save can undo another replica's. Collections written before
kept one record for all partitions (``watermarks/{topic}``); it is still read, and per
partition the further of the two marks counts, so a rolling upgrade (old replicas still
writing that record) neither embeds again nor loses its place. Marks only move forward
(an epoch, then an offset within it), which makes "the further" the right one.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.common.offsets import Watermark
from services.common.vectorindex.base import VectorIndex


def _further(mark: Watermark, other: Watermark | None) -> bool:
    return other is None or (mark.epoch, mark.offset) >= (other.epoch, other.offset)


class IndexWatermarks:
    def __init__(self, index: VectorIndex, topic: str) -> None:
        self.index = index
        self.legacy_key = f"watermarks/{topic}"
        self.prefix = f"watermarks/{topic}/"

    async def load_watermarks(self) -> dict[int, Watermark]:
        legacy = await self.index.read_meta(self.legacy_key) or {}
        marks = {int(p): Watermark.from_dict(mark) for p, mark in legacy.items()}
        for key, value in (await self.index.read_metas(self.prefix)).items():
            partition, mark = int(key.removeprefix(self.prefix)), Watermark.from_dict(value)
            if _further(mark, marks.get(partition)):
                marks[partition] = mark
        return marks

    async def save_watermarks(self, marks: Mapping[int, Watermark]) -> None:
        await self.index.write_metas({f"{self.prefix}{p}": m.as_dict() for p, m in marks.items()})


__all__ = ["IndexWatermarks"]
