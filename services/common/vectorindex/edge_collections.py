"""The physical Qdrant Edge collections behind an alias, for a replay: folders under one
root, the alias in ``root/aliases.json`` (see :mod:`.edge`)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from services.common.vectorindex.edge import (
    EdgeVectorIndex,
    open_shard,
    read_aliases,
    write_aliases,
)


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
