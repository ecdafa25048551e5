"""How the user model mounts into a process: its events subscriber, and readiness
checks for Kafka and Redis. ``attune run usermodel`` and ``attune dev`` both mount it
this way (services/app/bootstrap.py)."""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from services.common.kafka import check_broker
from services.common.mount import ServiceMount
from services.common.offsets import LogProbe
from services.common.settings import Settings
from services.usermodel.subscriber import events_router


def mount(
    settings: Settings, *, broker: KafkaBroker, redis: Redis, probe: LogProbe | None = None
) -> ServiceMount:
    return ServiceMount(
        name="usermodel",
        kafka_routers=[events_router(settings, redis, probe=probe)],
        readiness_checks={"kafka": partial(check_broker, broker), "redis": redis.ping},
    )


__all__ = ["mount"]
