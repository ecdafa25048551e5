"""The composition root: open the clients the services of one process need, mount the
services, and serve them; close everything in the reverse order at the end.

``attune run <service>`` runs one service alone, configured by the environment;
``attune dev`` runs all four in one process on the embedded stack, with one HTTP
port serving both the ingest and the query API. Both go through :func:`assemble`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from services.app.names import SERVICES, Service
from services.common.access import Access, check_access
from services.common.embedding import Embedder
from services.common.http import create_http_app
from services.common.kafka import aiokafka_options, connected_producer, make_broker
from services.common.mount import ServiceMount
from services.common.offsets import LogProbe
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.tracing import traced_embedder, traced_redis, traced_vector_index
from services.common.vectorindex import VectorIndex, open_vector_index

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Needs:
    kafka: bool = False
    redis: bool = False
    model: bool = False  # the embedding model and the vector index
    api: Access | None = None  # the kind of key its HTTP API takes


NEEDS: dict[Service, Needs] = {
    Service.ingest: Needs(kafka=True, api="write"),
    Service.embedder: Needs(kafka=True, model=True),
    Service.usermodel: Needs(kafka=True, redis=True),
    Service.query: Needs(redis=True, model=True, api="read"),
}


def check_access_for(settings: Settings, services: Sequence[Service]) -> None:
    """Raise SettingsError when ``services`` must not serve their APIs as configured
    (see :func:`services.common.access.access_problem`)."""
    apis = {api for s in services if (api := NEEDS[Service(s)].api) is not None}
    check_access(settings, apis)


@dataclass
class Dependencies:
    """What the services of one process share, opened and closed together. With tracing
    on, the stores and the model are wrapped to make spans (the services use them
    unaware); off, they are the bare ones."""

    settings: Settings
    broker: KafkaBroker | None = None
    redis: Redis | None = None
    embedder: Embedder | None = None
    vector_index: VectorIndex | None = None
    probes: list[LogProbe] = field(default_factory=list)

    def log_probe(self) -> LogProbe:
        """A probe of the log for one consumer (gaps; resets where the broker may lose
        its log, as the embedded one does); it connects on first use and is closed with
        the dependencies, after the broker has stopped."""
        probe = LogProbe(
            aiokafka_options(self.settings), log_may_reset=self.settings.kafka_log_may_reset
        )
        self.probes.append(probe)
        return probe


@asynccontextmanager
async def open_dependencies(
    settings: Settings, services: Sequence[Service]
) -> AsyncIterator[Dependencies]:
    needs = [NEEDS[Service(s)] for s in services]
    async with AsyncExitStack() as stack:
        deps = Dependencies(settings=settings)

        async def close_probes() -> None:
            for probe in deps.probes:
                await probe.close()

        stack.push_async_callback(close_probes)  # closed last
        if any(n.kafka for n in needs):
            deps.broker = make_broker(settings)
        if any(n.redis for n in needs):
            deps.redis = traced_redis(make_redis(settings))
            stack.push_async_callback(deps.redis.aclose)
        if any(n.model for n in needs):
            model = await asyncio.to_thread(Embedder.from_settings, settings)
            deps.embedder = traced_embedder(model)
            stack.callback(deps.embedder.close)
            deps.vector_index = traced_vector_index(
                open_vector_index(settings, deps.embedder.dimension)
            )
            await deps.vector_index.ensure_ready()
            stack.push_async_callback(deps.vector_index.close)
        yield deps


def _opened(value: T | None, what: str) -> T:
    if value is None:
        raise RuntimeError(f"{what} is not opened in this process (see NEEDS)")
    return value


def mount(service: Service, deps: Dependencies) -> ServiceMount:
    """What ``service`` adds to the process, given the opened dependencies."""
    settings = deps.settings
    broker = partial(_opened, deps.broker, "Kafka")
    redis = partial(_opened, deps.redis, "Redis")
    model = partial(_opened, deps.embedder, "the embedding model")
    index = partial(_opened, deps.vector_index, "the vector index")
    # Each service is imported only when mounted: a query process never loads the
    # consumers' code, nor an ingest process the model's.
    match Service(service):
        case Service.ingest:
            from services import ingest

            return ingest.mount(broker=broker())
        case Service.embedder:
            from services import embedder

            return embedder.mount(
                settings, broker=broker(), embedder=model(), index=index(),
                probe=deps.log_probe(),
            )  # fmt: skip
        case Service.usermodel:
            from services import usermodel

            return usermodel.mount(settings, broker=broker(), redis=redis(), probe=deps.log_probe())
        case Service.query:
            from services import query

            return query.mount(settings, redis=redis(), index=index(), embedder=model())


def http_app(settings: Settings, mounts: Sequence[ServiceMount], name: str) -> FastAPI:
    """One app serving the mounts' HTTP APIs, readiness checks and state, besides
    /healthz, /readyz and /metrics."""
    return create_http_app(
        service=name,
        title="Attune" if len(mounts) > 1 else f"Attune {name}",
        description="Real-time personalization: ingest behaviour and content, query "
        "recommendations, search, similar items and user profiles.",
        settings=settings,
        routers=[router for m in mounts for router in m.http_routers],
        routes=[route for m in mounts for route in m.http_routes],
        readiness_checks={k: v for m in mounts for k, v in m.readiness_checks.items()},
        state={k: v for m in mounts for k, v in m.app_state.items()},
    )


@asynccontextmanager
async def running_broker(
    broker: KafkaBroker | None, mounts: Sequence[ServiceMount], settings: Settings
) -> AsyncIterator[None]:
    """Start the mounts' subscribers (the broker then also publishes); for a process
    that only publishes, keep the producer connected. Stopped at the end: in-flight
    batches are finished or abandoned (not committed)."""
    if broker is None:
        yield
        return
    routers = [router for m in mounts for router in m.kafka_routers]
    if not routers:
        async with connected_producer(broker, settings):
            yield
        return
    from services.common.consumer import rewind_past_the_end  # consumers' processes only

    for router in routers:
        broker.include_router(router)
    await broker.start()
    watchdog = (
        asyncio.create_task(rewind_past_the_end(broker)) if settings.kafka_log_may_reset else None
    )
    try:
        yield
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        await stop_within(broker, settings.shutdown_timeout_s + LEAVE_GROUP_S)


LEAVE_GROUP_S = 8.0  # beyond the batch's shutdown_timeout_s: leaving the group, closing


async def stop_within(broker: KafkaBroker, seconds: float) -> None:
    """Stop the broker's subscribers, but not for longer than ``seconds``: a process
    asked to stop must stop even when the group coordinator does not answer (a
    rebalance under way on a broker that takes its time). What was not committed is
    redelivered to the group, and the stores' watermarks make that exact."""
    try:
        await asyncio.wait_for(broker.stop(), timeout=seconds)
    except TimeoutError:
        pending = [
            repr(task.get_coro())
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task()
        ]
        log.warning(
            "the consumers did not stop within %.0f s; going on without them "
            "(uncommitted batches are redelivered); tasks still running: %s",
            seconds, pending,
        )  # fmt: skip


@dataclass(frozen=True)
class Assembly:
    """A process's services, mounted and running."""

    app: FastAPI
    deps: Dependencies
    mounts: tuple[ServiceMount, ...]


@asynccontextmanager
async def assemble(
    settings: Settings, services: Sequence[Service], *, name: str | None = None
) -> AsyncIterator[Assembly]:
    """Open what ``services`` need, mount them and start their consumers; yield the one
    HTTP app that serves them (not yet listening: see :func:`serve_http`)."""
    services = tuple(Service(s) for s in services)
    async with open_dependencies(settings, services) as deps:
        mounts = tuple(mount(service, deps) for service in services)
        app = http_app(settings, mounts, name or "-".join(services))
        try:
            async with running_broker(deps.broker, mounts, settings):
                yield Assembly(app, deps, mounts)
        finally:
            for closing in (close for m in mounts for close in m.on_close):
                await closing()


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


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived process's ``main`` on uvloop (the event loop in C that
    uvicorn[standard] installs), or on asyncio's own where uvloop is missing."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


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


async def run_service(service: Service, settings: Settings) -> None:
    """Run one service until SIGINT/SIGTERM on ATTUNE_HTTP_HOST:ATTUNE_HTTP_PORT: the HTTP
    services their API, the consumers /healthz, /readyz and /metrics."""
    check_access_for(settings, (service,))
    host, port = settings.http_host, settings.http_port
    async with assemble(settings, (service,)) as assembly, serve_http(assembly.app, host, port):
        log.info("%s running; HTTP on %s:%d", service, host, port)
        await wait_for_shutdown_signal()


__all__ = [
    "NEEDS",
    "SERVICES",
    "Assembly",
    "Dependencies",
    "Service",
    "assemble",
    "check_access_for",
    "http_app",
    "mount",
    "open_dependencies",
    "run_service",
    "serve_http",
    "tune_gc",
    "wait_for_shutdown_signal",
]
