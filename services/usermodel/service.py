"""The user-model consumer: events topic -> Redis. A thin handler: decode, dead-letter
what is malformed, fold the rest (retrying through a Redis outage), then commit."""

from __future__ import annotations

import time

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from prometheus_client import Counter
from pydantic import TypeAdapter
from redis.asyncio import Redis

from schemas.events import BehaviourEvent
from schemas.topics import EVENTS
from services.common.consumer import (
    batch_subscriber,
    decode_batch,
    publish_dead_letters,
    raw_records,
    retry_through_outage,
)
from services.common.metrics import BATCH_SECONDS, count_batch
from services.common.redis import REDIS_OUTAGE_ERRORS
from services.common.settings import Settings
from services.usermodel.fold import FoldConfig, UserModelFolder
from services.usermodel.keys import UserModelKeys

EVENTS_FOLDED = Counter("attune_usermodel_events", "Behaviour events folded into Redis.")

_EVENT = TypeAdapter(BehaviourEvent)


def events_router(settings: Settings, redis: Redis) -> KafkaRouter:
    """The events subscriber, ready for ``broker.include_router``."""
    group = f"{settings.kafka_group_prefix}-usermodel"
    folder = UserModelFolder(
        redis, UserModelKeys(settings.redis_namespace), FoldConfig.from_settings(settings)
    )
    router = KafkaRouter()

    @batch_subscriber(
        router,
        EVENTS.name,
        settings,
        group,
        description="Folds behaviour events into the per-user model in Redis.",
    )
    async def on_events(message: KafkaMessage, broker: KafkaBroker) -> None:
        started = time.perf_counter()
        records = raw_records(message)
        batch = decode_batch(records, _EVENT, consumer=group, max_bytes=settings.max_message_bytes)
        count_batch(group, [r.topic for r in records], batch.rejected)
        await publish_dead_letters(broker, batch.rejected)
        await retry_through_outage(lambda: folder.fold(batch.accepted), REDIS_OUTAGE_ERRORS)
        BATCH_SECONDS.labels(group).observe(time.perf_counter() - started)
        EVENTS_FOLDED.inc(len(batch.accepted))

    return router


__all__ = ["events_router"]
