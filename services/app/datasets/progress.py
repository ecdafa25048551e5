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
    from rich.progress import Progress as RichProgress

    from services.app.datasets.producer import Progress


@contextmanager
def progress_bars(console: Console | None = None) -> Iterator[RichProgress]:
    """A rich display for one or more bars (see :func:`add_bar`): done, total, rate,
    time elapsed and left."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console,
    ) as bars:  # fmt: skip
        yield bars


def add_bar(bars: RichProgress, description: str) -> Progress:
    """A bar in ``bars``, as a ``(done, total)`` callback."""
    task = bars.add_task(description, total=None, rate="")

    def update(done: int, total: int | None) -> None:
        bars.update(task, completed=done, total=total)
        speed = bars.tasks[task].speed
        bars.update(task, rate=f"{speed:,.0f} msg/s" if speed else "")

    return update


@contextmanager
def rich_progress(description: str, *, console: Console | None = None) -> Iterator[Progress]:
    """``with rich_progress("events") as progress: await produce(..., progress=progress)``
    shows messages done, total, rate and time left while the block runs."""
    with progress_bars(console) as bars:
        yield add_bar(bars, description)


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


__all__ = ["add_bar", "progress_bars", "rich_progress", "wait_with_progress"]
