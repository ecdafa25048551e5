"""The names the CLI and the composition root share: the services a process can run
and the derived state a replay or a digest can target. Import-light on purpose: the
CLI offers them as choices before it loads anything heavy."""

from __future__ import annotations

from enum import StrEnum


class Service(StrEnum):
    ingest = "ingest"
    embedder = "embedder"
    usermodel = "usermodel"
    query = "query"


SERVICES: tuple[Service, ...] = tuple(Service)


class State(StrEnum):
    """Derived state, by the service that writes it."""

    usermodel = "usermodel"
    embedder = "embedder"


class ReplayTarget(StrEnum):
    usermodel = "usermodel"
    embedder = "embedder"
    all = "all"


__all__ = ["SERVICES", "ReplayTarget", "Service", "State"]
