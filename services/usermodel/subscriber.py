"""The user model's Kafka entry: the events topic's batch subscriber, on the shared
skeleton (services/common/consumer.py). It supplies only the contract it decodes,
where its watermarks live (the live Redis namespace, looked up for every attempt: a
replay may have switched it) and its apply step, the fold; a Redis outage pauses it.
It is pipelined: the next batch is decoded and prepared while Redis folds this one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaRouter
from prometheus_client import REGISTRY, Counter
from pydantic import TypeAdapter
from redis.asyncio import Redis

from schemas.events import BehaviourEvent
from schemas.topics import EVENTS
from services.common import telemetry
from services.common.consumer import BatchConsumer, BatchOutcome
from services.common.offsets import LogProbe
from services.common.records import Envelope
from services.common.redis import is_redis_outage
from services.common.settings import Settings
from services.common.userstore import Namespaces, RedisWatermarks
from services.usermodel.fold import FoldConfig, FoldStats, PreparedFold, UserModelFolder

EVENTS_FOLDED = Counter("attune_usermodel_events", "Behaviour events folded into Redis.")
EVENTS_SKIPPED = Counter(
    "attune_usermodel_redelivered", "Events skipped because their offset was already applied."
)

EVENT_ADAPTER = TypeAdapter(BehaviourEvent)

EventsConsumer = BatchConsumer[BehaviourEvent, RedisWatermarks, FoldStats]


def events_folded_total() -> float:
    """Events folded so far by the user-model consumers running in this process."""
    return REGISTRY.get_sample_value("attune_usermodel_events_total") or 0.0


def consumer_group(settings: Settings) -> str:
    return f"{settings.kafka_group_prefix}-usermodel"


def events_consumer(
    settings: Settings, redis: Redis, *, probe: LogProbe | None = None
) -> EventsConsumer:
    folder = UserModelFolder(redis, FoldConfig.from_settings(settings))
    namespaces = Namespaces(redis, settings.redis_namespace)
    tracer = telemetry.tracer(__name__)

    async def live_watermarks() -> RedisWatermarks:
        return RedisWatermarks(redis, await namespaces.active_keys())

    async def apply(lanes: list[PreparedFold], events: int, store: RedisWatermarks) -> FoldStats:
        with tracer.start_as_current_span("usermodel.fold", attributes={"attune.events": events}):
            return await folder.apply(lanes, store.keys)

    async def fold(events: list[Envelope[BehaviourEvent]], store: RedisWatermarks) -> FoldStats:
        return await apply(folder.prepare(events), len(events), store)

    async def prepare(
        events: list[Envelope[BehaviourEvent]],
    ) -> Callable[[RedisWatermarks], Awaitable[FoldStats]]:
        lanes = await folder.prepare_yielding(events)
        return lambda store: apply(lanes, len(events), store)

    return BatchConsumer(
        topic=EVENTS.name,
        group_id=consumer_group(settings),
        settings=settings,
        adapter=EVENT_ADAPTER,
        watermarks=live_watermarks,
        apply=fold,
        is_outage=is_redis_outage,
        dependency="redis",
        probe=probe,
        prepare=prepare,
        pipelined=True,
    )


def count_folded(outcome: BatchOutcome[BehaviourEvent, FoldStats]) -> None:
    EVENTS_FOLDED.inc(len(outcome.applied))
    EVENTS_SKIPPED.inc(outcome.skipped)


def events_router(
    settings: Settings, redis: Redis, *, probe: LogProbe | None = None
) -> KafkaRouter:
    """The events subscriber; include it into a broker before the broker starts."""
    return events_consumer(settings, redis, probe=probe).router(
        description="Folds behaviour events into the per-user model in Redis.",
        on_outcome=count_folded,
    )


__all__ = [
    "EVENT_ADAPTER",
    "EventsConsumer",
    "consumer_group",
    "events_consumer",
    "events_folded_total",
    "events_router",
]
