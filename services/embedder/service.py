"""How the embedder mounts into a process: its content subscriber, and readiness
checks for Kafka and the vector index. ``attune run embedder`` and ``attune dev``
both mount it this way (services/app/bootstrap.py)."""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaBroker

from services.common.kafka import check_broker
from services.common.mount import ServiceMount
from services.common.offsets import LogProbe
from services.common.settings import Settings
from services.common.vectorindex import VectorIndex
from services.embedder.apply import DocumentEmbedder
from services.embedder.subscriber import content_router


def mount(
    settings: Settings,
    *,
    broker: KafkaBroker,
    embedder: DocumentEmbedder,
    index: VectorIndex,
    probe: LogProbe | None = None,
) -> ServiceMount:
    return ServiceMount(
        name="embedder",
        kafka_routers=[content_router(settings, embedder, index, probe=probe)],
        readiness_checks={"kafka": partial(check_broker, broker), "vector_index": index.count},
    )


__all__ = ["mount"]
