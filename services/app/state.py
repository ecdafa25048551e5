"""Operations on derived state, behind ``attune replay`` and ``attune state digest``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console

from services.app.datasets.progress import add_bar, progress_bars
from services.app.names import ReplayTarget, State
from services.common.digest import Digest
from services.common.embedding import Embedder
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.vectorindex import open_collections

if TYPE_CHECKING:
    from services.embedder.replay import EmbedderReplay
    from services.usermodel.replay import UserModelReplay


async def replay(
    settings: Settings,
    target: ReplayTarget,
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
                        progress=add_bar(bars, "content -> vectors"),
                    )
                )
            if target != "embedder":
                jobs.append(
                    replay_usermodel(
                        settings,
                        redis,
                        since=since,
                        drop_previous=drop_previous,
                        progress=add_bar(bars, "events -> user model"),
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


async def digest(settings: Settings, target: State, *, name: str | None = None) -> Digest:
    """The canonical digest of the live (or the named) namespace or collection."""
    if target == "usermodel":
        from services.common.userstore import (
            DecayRates,
            Namespaces,
            UserModelKeys,
            digest_namespace,
        )

        redis = make_redis(settings)
        try:
            namespace = name or await Namespaces(redis, settings.redis_namespace).active()
            decay = DecayRates.from_settings(settings)
            return await digest_namespace(redis, UserModelKeys(namespace), decay)
        finally:
            await redis.aclose()

    from services.common.vectorindex.digest import digest_collection

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


__all__ = ["digest", "replay"]
