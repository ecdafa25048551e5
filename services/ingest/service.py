"""How ingest mounts into a process: its routes (Attune's and Segment's), the broker
they publish with, and a readiness check for Kafka. ``attune run ingest`` and ``attune
dev`` both mount it this way (services/app/bootstrap.py), which keeps the broker
connected (ingest answers 503 while it is not)."""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaBroker

from services.common.kafka import check_broker
from services.common.mount import ServiceMount
from services.ingest.routes import ingest_router


def mount(*, broker: KafkaBroker) -> ServiceMount:
    return ServiceMount(
        name="ingest",
        http_routers=[ingest_router()],
        readiness_checks={"kafka": partial(check_broker, broker)},
        app_state={"broker": broker},
        publishes=True,
    )


__all__ = ["mount"]
