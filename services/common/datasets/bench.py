"""Measure the bulk-load rate against a fresh embedded broker, by hand:

    .venv/bin/python -m services.common.datasets.bench [MOVIELENS_FOLDER] [--limit N]

Starts an embedded stack in a temporary folder, produces the MovieLens items and then
every rating event, prints messages per second for each, and stops the stack.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from services.common.datasets.movielens import (
    default_movielens_folder,
    movielens_events,
    movielens_items,
)
from services.common.datasets.producer import Message, produce
from services.common.datasets.progress import rich_progress
from services.common.embedded import EmbeddedStack
from services.common.settings import Settings


async def _timed(settings: Settings, label: str, messages: list[Message]) -> None:
    started = time.perf_counter()
    with rich_progress(label) as progress:
        count = await produce(settings, messages, progress=progress)
    elapsed = time.perf_counter() - started
    print(f"{label}: {count:,} messages in {elapsed:.2f} s = {count / elapsed:,.0f} msg/s")


async def main(folder: Path, limit: int | None) -> None:
    started = time.perf_counter()
    items: list[Message] = list(movielens_items(folder))
    events: list[Message] = list(movielens_events(folder, limit=limit))
    print(
        f"parsed {len(items):,} items, {len(events):,} events in "
        f"{time.perf_counter() - started:.2f} s"
    )
    with tempfile.TemporaryDirectory(prefix="attune-bench-") as data_dir:
        async with EmbeddedStack(Path(data_dir)) as stack:
            settings = stack.settings(Settings())
            await _timed(settings, "items", items)
            await _timed(settings, "events", events)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", nargs="?", type=Path, default=default_movielens_folder())
    parser.add_argument("--limit", type=int, default=None)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.folder, arguments.limit))
