"""The content partitions' watermarks, kept in the vector collection itself (a meta
record beside the items), so that they switch with it when a replay moves the alias
(see services/common/offsets.py)."""

from __future__ import annotations

from collections.abc import Mapping

from services.common.offsets import Watermark
from services.common.vectorindex.base import VectorIndex


class IndexWatermarks:
    def __init__(self, index: VectorIndex, topic: str) -> None:
        self.index = index
        self.key = f"watermarks/{topic}"

    async def load_watermarks(self) -> dict[int, Watermark]:
        stored = await self.index.read_meta(self.key) or {}
        return {int(p): Watermark.from_dict(mark) for p, mark in stored.items()}

    async def save_watermarks(self, marks: Mapping[int, Watermark]) -> None:
        current = await self.load_watermarks()
        current.update(marks)
        value = {str(p): mark.as_dict() for p, mark in current.items()}
        await self.index.write_meta(self.key, value)


__all__ = ["IndexWatermarks"]
