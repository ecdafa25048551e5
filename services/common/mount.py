"""What a service adds to a process: its HTTP routes, its Kafka subscribers, its
readiness checks and what its routes find on ``app.state``.

Each service builds one with its own ``mount(...)`` (``services/<name>/service.py``),
given the clients it needs; the composition root (services/app/bootstrap.py) opens the
clients, mounts the services a process runs, and serves them together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter
    from faststream.kafka import KafkaRouter
    from starlette.routing import BaseRoute

ReadinessCheck = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class ServiceMount:
    name: str
    http_routers: Sequence[APIRouter] = ()
    http_routes: Sequence[BaseRoute] = ()  # plain Starlette routes, matched first
    kafka_routers: Sequence[KafkaRouter] = ()
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    app_state: Mapping[str, object] = field(default_factory=dict)
    publishes: bool = False  # produces to Kafka from HTTP requests (needs a connection)
    on_close: Sequence[Callable[[], Awaitable[None]]] = ()  # before the clients close


__all__ = ["ReadinessCheck", "ServiceMount"]
