"""Process wiring: build each service's dependencies, run it, stop it cleanly.

``attune run <service>`` runs one service alone, configured by the environment;
``attune dev`` runs all four in one process on the embedded stack, with one HTTP
port serving both the ingest and the query API.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Literal

import uvicorn
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from services.common.embedding import Embedder
from services.common.http import create_http_app
from services.common.kafka import check_broker, make_broker
from services.common.offsets import LogStartProbe
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.tracing import traced_embedder, traced_redis, traced_vector_index
from services.common.vectorindex import VectorIndex, open_vector_index

log = logging.getLogger(__name__)

ServiceName = Literal["ingest", "embedder", "usermodel", "query"]
SERVICES: tuple[ServiceName, ...] = ("ingest", "embedder", "usermodel", "query")
USE_KAFKA = frozenset({"ingest", "embedder", "usermodel"})


class _Server(uvicorn.Server):
    """uvicorn inside our event loop: the process, not uvicorn, handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve_http(app: FastAPI, host: str, port: int) -> AsyncIterator[_Server]:
    server = _Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it (e.g. the port is taken)
                raise RuntimeError(f"HTTP server on {host}:{port} stopped during start-up")
            await asyncio.sleep(0.02)
        yield server
    finally:
        server.should_exit = True
        await task


def tune_gc() -> None:
    """For a long-running service: objects that live for the whole run are set aside
    from collections, and young collections come rarer. The consumers allocate many
    short-lived objects per batch; at the default thresholds collection took a
    fifth of a replay's CPU."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def wait_for_shutdown_signal() -> None:
    """Return on Ctrl-C (SIGINT) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@dataclass
class Dependencies:
    """What the services of one process share, opened and closed together."""

    settings: Settings
    broker: KafkaBroker
    redis: Redis | None = None
    embedder: Embedder | None = None
    vector_index: VectorIndex | None = None


@asynccontextmanager
async def open_dependencies(
    settings: Settings, *, redis: bool, model: bool
) -> AsyncIterator[Dependencies]:
    async with AsyncExitStack() as stack:
        # Closed last: the probes the consumers' routers open (a closed one reopens).
        stack.push_async_callback(LogStartProbe.close_all)
        deps = Dependencies(settings=settings, broker=make_broker(settings))
        # With tracing on, the stores and the model are wrapped to make spans (the
        # consumers and the query engine use them unaware); off, they are the bare ones.
        if redis:
            deps.redis = traced_redis(make_redis(settings))
            stack.push_async_callback(deps.redis.aclose)
        if model:
            embedder = await asyncio.to_thread(Embedder.from_settings, settings)
            deps.embedder = traced_embedder(embedder)
            stack.callback(deps.embedder.close)
            deps.vector_index = traced_vector_index(
                open_vector_index(settings, deps.embedder.dimension)
            )
            await deps.vector_index.ensure_ready()
            stack.push_async_callback(deps.vector_index.close)
        yield deps


def include_consumers(deps: Dependencies, services: tuple[ServiceName, ...]) -> None:
    from services.embedder.service import content_router
    from services.usermodel.service import events_router

    if "embedder" in services:
        assert deps.embedder is not None
        assert deps.vector_index is not None
        deps.broker.include_router(content_router(deps.settings, deps.embedder, deps.vector_index))
    if "usermodel" in services:
        assert deps.redis is not None
        deps.broker.include_router(events_router(deps.settings, deps.redis))


def build_http_app(deps: Dependencies, services: tuple[ServiceName, ...], name: str) -> FastAPI:
    """One app serving the HTTP APIs of ``services`` (and /healthz, /readyz, /metrics)."""
    routers = []
    if "ingest" in services:
        from services.ingest.app import ingest_router

        routers.append(ingest_router())
    if "query" in services:
        from services.query.app import query_router

        routers.append(query_router())
    app = create_http_app(
        service=name,
        title="Attune" if len(services) > 1 else f"Attune {name}",
        description="Real-time personalization: ingest behaviour and content, query "
        "recommendations, search, similar items and user profiles.",
        settings=deps.settings,
        routers=routers,
    )
    app.state.broker = deps.broker
    checks: dict[str, Callable[[], object]] = {}
    if set(services) & USE_KAFKA:
        checks["kafka"] = partial(check_broker, deps.broker)
    if deps.redis is not None:
        checks["redis"] = deps.redis.ping
    if deps.vector_index is not None:
        checks["vector_index"] = deps.vector_index.count
    app.state.readiness_checks.update(checks)
    if "query" in services:
        from services.query.app import build_query_engine

        assert deps.redis is not None
        assert deps.vector_index is not None
        assert deps.embedder is not None
        app.state.query_engine = build_query_engine(
            deps.settings, deps.redis, deps.vector_index, deps.embedder
        )
    return app


async def run_service(service: ServiceName, settings: Settings) -> None:
    """Run one service until SIGINT/SIGTERM on ATTUNE_HTTP_HOST:ATTUNE_HTTP_PORT: the HTTP
    services their API, the consumers /healthz, /readyz and /metrics."""
    if service == "ingest":
        from services.ingest.app import create_app

        async with serve_http(create_app(settings), settings.http_host, settings.http_port):
            log.info("%s up; HTTP on %s:%d", service, settings.http_host, settings.http_port)
            await wait_for_shutdown_signal()
        return
    if service == "query":
        # Opened here rather than in the query app's own lifespan, so that the query
        # service gets the same (traced when tracing is on) Redis, index and model.
        async with open_dependencies(settings, redis=True, model=True) as deps:
            app = build_http_app(deps, (service,), service)
            async with serve_http(app, settings.http_host, settings.http_port):
                log.info("%s up; HTTP on %s:%d", service, settings.http_host, settings.http_port)
                await wait_for_shutdown_signal()
        return
    needs_redis, needs_model = service == "usermodel", service == "embedder"
    async with open_dependencies(settings, redis=needs_redis, model=needs_model) as deps:
        include_consumers(deps, (service,))
        app = build_http_app(deps, (service,), service)
        await deps.broker.start()
        try:
            async with serve_http(app, settings.http_host, settings.http_port):
                log.info(
                    "%s running; HTTP on %s:%d", service, settings.http_host, settings.http_port
                )
                await wait_for_shutdown_signal()
        finally:
            await stop_consumers(deps)


async def stop_consumers(deps: Dependencies) -> None:
    """Stop the broker (finishing or abandoning in-flight batches), then the probes."""
    await deps.broker.stop()
    await LogStartProbe.close_all()


__all__ = [
    "SERVICES",
    "Dependencies",
    "ServiceName",
    "build_http_app",
    "include_consumers",
    "open_dependencies",
    "run_service",
    "serve_http",
    "stop_consumers",
    "tune_gc",
    "wait_for_shutdown_signal",
]
