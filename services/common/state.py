"""Operations on derived state, behind ``attune replay`` and ``attune state digest``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from services.common.digest import Digest
from services.common.embedding import Embedder
from services.common.redis import make_redis
from services.common.replay import ReplayProgress
from services.common.settings import Settings
from services.common.vectorindex import open_collections

if TYPE_CHECKING:
    from services.embedder.replay import EmbedderReplay
    from services.usermodel.replay import UserModelReplay

Target = Literal["usermodel", "embedder", "all"]


@contextmanager
def progress_bars(console: Console) -> Iterator[Progress]:
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console,
    ) as bars:  # fmt: skip
        yield bars


def _bar(bars: Progress, label: str) -> ReplayProgress:
    task = bars.add_task(label, total=None, rate="")

    def update(done: int, total: int | None) -> None:
        bars.update(task, completed=done, total=total)
        speed = bars.tasks[task].speed
        bars.update(task, rate=f"{speed:,.0f} msg/s" if speed else "")

    return update


async def replay(
    settings: Settings,
    target: Target,
    console: Console,
    *,
    since: datetime | None = None,
    drop_previous: bool = False,
) -> None:
    """Rebuild ``target`` from the topics beside the live state, then switch to it."""
    from services.embedder.replay import replay_embedder
    from services.usermodel.replay import replay_usermodel

    redis = make_redis(settings)
    embedder = (
        await asyncio.to_thread(Embedder.from_settings, settings) if target != "usermodel" else None
    )
    try:
        with progress_bars(console) as bars:
            jobs: list[Coroutine[Any, Any, EmbedderReplay | UserModelReplay]] = []
            if embedder is not None:
                collections = open_collections(settings, embedder.dimension)
                jobs.append(
                    replay_embedder(
                        settings,
                        embedder,
                        collections,
                        since=since,
                        drop_previous=drop_previous,
                        progress=_bar(bars, "content -> vectors"),
                    )
                )
            if target != "embedder":
                jobs.append(
                    replay_usermodel(
                        settings,
                        redis,
                        since=since,
                        drop_previous=drop_previous,
                        progress=_bar(bars, "events -> user model"),
                    )
                )
            results = await asyncio.gather(*jobs)
        for result in results:
            name = getattr(result, "collection", None) or getattr(result, "namespace", "")
            console.print(
                f"[green]{name}[/green] is live (was {result.previous}): "
                f"{result.stats.records:,} records in {result.stats.seconds:.1f} s "
                f"({result.stats.rate:,.0f}/s), {result.rejected} not valid"
                + ("; the previous one is dropped" if result.dropped_previous else "")
            )
    finally:
        await redis.aclose()
        if embedder is not None:
            embedder.close()


async def digest(
    settings: Settings, target: Literal["usermodel", "embedder"], *, name: str | None = None
) -> Digest:
    """The canonical digest of the live (or the named) namespace or collection."""
    if target == "usermodel":
        from services.usermodel.digest import digest_namespace
        from services.usermodel.fold import FoldConfig
        from services.usermodel.keys import UserModelKeys
        from services.usermodel.namespace import Namespaces

        redis = make_redis(settings)
        try:
            namespace = name or await Namespaces(redis, settings.redis_namespace).active()
            config = FoldConfig.from_settings(settings)
            return await digest_namespace(redis, UserModelKeys(namespace), config)
        finally:
            await redis.aclose()

    from services.embedder.digest import digest_collection

    embedder = await asyncio.to_thread(Embedder.from_settings, settings)
    try:
        collections = open_collections(settings, embedder.dimension)
        index = collections.open(name or await collections.active())
        await index.ensure_ready()
        try:
            return await digest_collection(index, settings.embedding_model)
        finally:
            await index.close()
    finally:
        embedder.close()


__all__ = ["digest", "progress_bars", "replay"]
