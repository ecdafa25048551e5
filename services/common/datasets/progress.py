"""A rich progress bar (rate, ETA) as a ``produce(progress=...)`` callback."""

from __future__ import annotations

from collections.abc import Iterator
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


__all__ = ["rich_progress"]
