"""Rebuild the user model from the events topic into a fresh namespace, then switch.

While the rebuild runs the live namespace keeps serving (and the live consumer keeps
folding into it). At the end one SET moves the pointer; the live consumer, at its
next batch, finds that the new namespace's watermarks are behind its position and
fetches from there (see services/common/offsets.py), so nothing between the end of
the replay and the switch is missed. On failure the new namespace is deleted and
the pointer is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from schemas.topics import EVENTS
from services.common.offsets import Watermark
from services.common.replay import ReadStats, ReplayDecoder, ReplayProgress, read_topic
from services.common.settings import Settings
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.namespace import Namespaces, RedisWatermarks
from services.usermodel.fold import FoldConfig, PreparedFold, UserModelFolder
from services.usermodel.subscriber import EVENT_ADAPTER

log = logging.getLogger(__name__)


@dataclass
class UserModelReplay:
    namespace: str
    previous: str
    stats: ReadStats
    rejected: int
    dropped_previous: bool


async def rebuild_namespace(
    settings: Settings,
    redis: Redis,
    namespace: str,
    *,
    since: datetime | None = None,
    batch_records: int = 50_000,
    progress: ReplayProgress | None = None,
) -> tuple[ReadStats, int]:
    """Fold the whole events topic into ``namespace``; return the read stats and how
    many records were not valid events (they are in the dead-letter topic already)."""
    keys = UserModelKeys(namespace)
    folder = UserModelFolder(redis, FoldConfig.from_settings(settings), direct=True)
    store = RedisWatermarks(redis, keys)
    decoder = ReplayDecoder(EVENT_ADAPTER, settings.max_message_bytes)

    def prepare(records: Sequence[Any]) -> Coroutine[Any, Any, None]:
        events, marks = decoder.decode(records)
        return folded(folder.prepare(events), marks)

    async def folded(lanes: list[PreparedFold], applied: dict[int, Watermark]) -> None:
        await folder.apply(lanes, keys)
        await store.save_watermarks(applied)

    stats = await read_topic(
        settings, EVENTS.name, prepare, since=since, batch_records=batch_records,
        lanes=EVENTS.partitions, progress=progress,
    )  # fmt: skip
    await folder.expire_inactive(keys)
    return stats, decoder.rejected


async def replay_usermodel(
    settings: Settings,
    redis: Redis,
    *,
    since: datetime | None = None,
    drop_previous: bool = False,
    batch_records: int = 50_000,
    progress: ReplayProgress | None = None,
) -> UserModelReplay:
    namespaces = Namespaces(redis, settings.redis_namespace)
    previous = await namespaces.active()
    namespace = namespaces.new_name()
    try:
        stats, rejected = await rebuild_namespace(
            settings, redis, namespace, since=since, batch_records=batch_records,
            progress=progress,
        )  # fmt: skip
    except BaseException:
        log.error("replay failed; deleting the partial namespace %s", namespace)
        await namespaces.drop(namespace)
        raise
    await namespaces.switch(namespace)
    if drop_previous:
        await namespaces.drop(previous)
    return UserModelReplay(namespace, previous, stats, rejected, drop_previous)


__all__ = ["UserModelReplay", "rebuild_namespace", "replay_usermodel"]
