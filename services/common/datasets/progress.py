"""A rich progress bar (rate, ETA) as a ``produce(progress=...)`` callback, and a wait
for consumers to catch up that shows one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from services.common.datasets.producer import Progress


@contextmanager
def rich_progress(description: str, *, console: Console | None = None) -> Iterator[Progress]:
    """``with rich_progress("events") as progress: await produce(..., progress=progress)``
    shows messages done, total, rate and time left while the block runs."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=None, rate="")

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.0f} msg/s" if speed else "")

        yield update


async def wait_with_progress(
    label: str, total: int, done_now: Callable[[], Awaitable[float]], deadline_s: float,
    *, console: Console | None = None,
) -> int:  # fmt: skip
    """Poll ``done_now()`` and show a bar until it reaches ``total`` or ``deadline_s``
    passes; return the last count (the caller decides whether short of ``total`` is an
    error)."""
    started = time.monotonic()
    with rich_progress(label, console=console) as progress:
        while True:
            done = int(await done_now())
            progress(min(done, total), total)
            if done >= total or time.monotonic() - started > deadline_s:
                return done
            await asyncio.sleep(0.2)


__all__ = ["rich_progress", "wait_with_progress"]
