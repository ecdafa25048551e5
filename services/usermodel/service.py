"""The user-model consumer: events topic -> Redis. A thin handler: check the batch
against the offsets the live namespace has applied, dead-letter what is malformed,
fold the rest (retrying through a Redis outage), record the offsets, then commit."""

from __future__ import annotations

import time

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from prometheus_client import REGISTRY, Counter
from pydantic import TypeAdapter
from redis.asyncio import Redis

from schemas.events import BehaviourEvent
from schemas.topics import EVENTS
from services.common import telemetry
from services.common.consumer import (
    Envelope,
    batch_subscriber,
    decode_batch,
    publish_dead_letters,
    raw_records,
    retry_through_outage,
)
from services.common.kafka import log_start_probe
from services.common.metrics import BATCH_SECONDS, consuming, count_batch, observe_freshness
from services.common.offsets import PartitionTracker
from services.common.redis import REDIS_OUTAGE_ERRORS
from services.common.settings import Settings
from services.usermodel.fold import FoldConfig, UserModelFolder
from services.usermodel.namespace import Namespaces, RedisWatermarks

EVENTS_FOLDED = Counter("attune_usermodel_events", "Behaviour events folded into Redis.")
EVENTS_SKIPPED = Counter(
    "attune_usermodel_redelivered", "Events skipped because their offset was already applied."
)

EVENT_ADAPTER = TypeAdapter(BehaviourEvent)


def events_folded_total() -> float:
    """Events folded so far by the user-model consumers running in this process."""
    return REGISTRY.get_sample_value("attune_usermodel_events_total") or 0.0


def consumer_group(settings: Settings) -> str:
    return f"{settings.kafka_group_prefix}-usermodel"


def events_router(settings: Settings, redis: Redis) -> KafkaRouter:
    """The events subscriber, ready for ``broker.include_router``."""
    group = consumer_group(settings)
    folder = UserModelFolder(redis, FoldConfig.from_settings(settings))
    namespaces = Namespaces(redis, settings.redis_namespace)
    tracker = PartitionTracker(EVENTS.name, probe=log_start_probe(settings))
    tracer = telemetry.tracer(__name__)
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

        async def fold_batch() -> tuple[list[Envelope[BehaviourEvent]], int]:
            # All of it again after an outage: Redis may have come back without what it
            # held (no persistence, or its last second lost), so the plan is made anew.
            keys = await namespaces.active_keys()
            store = RedisWatermarks(redis, keys)
            plan = await tracker.plan(records, store, message.consumer)
            batch = decode_batch(
                plan.apply,  # type: ignore[arg-type]
                EVENT_ADAPTER,
                consumer=group,
                max_bytes=settings.max_message_bytes,
                epochs={p: mark.epoch for p, mark in plan.marks.items()},
            )
            await publish_dead_letters(broker, batch.rejected)
            with tracer.start_as_current_span(
                "usermodel.fold", attributes={"attune.events": len(batch.accepted)}
            ):
                await folder.fold(batch.accepted, keys)
            await store.save_watermarks(plan.marks)
            return batch.accepted, plan.skipped

        with consuming(group, records, message.consumer):
            folded, skipped = await retry_through_outage(
                fold_batch, REDIS_OUTAGE_ERRORS, dependency="redis"
            )
        observe_freshness(group, folded)
        count_batch(group, [r.topic for r in records])
        BATCH_SECONDS.labels(group).observe(time.perf_counter() - started)
        EVENTS_FOLDED.inc(len(folded))
        EVENTS_SKIPPED.inc(skipped)

    return router


__all__ = ["EVENT_ADAPTER", "consumer_group", "events_folded_total", "events_router"]
