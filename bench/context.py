"""What the phases of one run share: sizes, the stack's settings, the data, the outputs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import profiles
from bench.results import Figure, Results
from bench.services import Service, start_service
from bench.workloads import MovieLens, Vectors
from services.common.embedding import Embedder
from services.common.settings import Settings


@dataclass(frozen=True)
class Sizes:
    """How much work each phase does; ``FULL`` and ``QUICK`` below."""

    embed_pipeline_items: int  # a multiple of the consumer's batch size (500)
    usermodel_events: int | None  # None: all 100,836 ratings
    ingest_events: int
    ingest_connections: int
    scales: tuple[int, ...]
    headline_scale: int
    raw_searches: int
    raw_embed_searches: int
    open_warmup_s: float  # open loop: sent, not counted
    open_seconds: float  # open loop: counted, at each endpoint's fixed rate
    wrk_seconds: float  # saturation (closed loop, wrk)
    wrk_connections: int
    wrk_threads: int
    freshness_seconds: float
    freshness_events_per_s: float
    profile_seconds: float


FULL = Sizes(
    embed_pipeline_items=3_000,
    usermodel_events=None,
    ingest_events=50_000,
    ingest_connections=8,
    scales=(1_000, 10_000, 100_000),
    headline_scale=10_000,
    raw_searches=1_000,
    raw_embed_searches=300,
    open_warmup_s=5.0,
    open_seconds=30.0,
    wrk_seconds=15.0,
    wrk_connections=8,
    wrk_threads=2,
    freshness_seconds=30.0,
    freshness_events_per_s=1_000.0,
    profile_seconds=10.0,
)

QUICK = Sizes(
    embed_pipeline_items=500,
    usermodel_events=20_000,
    ingest_events=5_000,
    ingest_connections=8,
    scales=(1_000, 10_000),
    headline_scale=10_000,
    raw_searches=300,
    raw_embed_searches=100,
    open_warmup_s=2.0,
    open_seconds=8.0,
    wrk_seconds=5.0,
    wrk_connections=8,
    wrk_threads=2,
    freshness_seconds=10.0,
    freshness_events_per_s=1_000.0,
    profile_seconds=4.0,
)


@dataclass
class Context:
    sizes: Sizes
    quick: bool
    console: Console
    settings: Settings
    work: Path
    out: Path
    results: Results
    data: MovieLens
    run_id: str
    profiles: bool = True
    vectors: Vectors | None = None
    events_on_topic: int = 0
    """Events produced to the events topic so far in this run."""
    events_folded: int = 0
    """Events the default usermodel consumer group has consumed so far."""
    scale_dirs: dict[int, Path] = field(default_factory=dict)
    _embedder: Embedder | None = None

    @property
    def log_dir(self) -> Path:
        return self.work / "logs"

    @property
    def tenant(self) -> str:
        from bench.workloads import TENANT

        return TENANT

    def say(self, text: str) -> None:
        self.console.print(text)

    async def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = await asyncio.to_thread(Embedder.from_settings, self.settings)
        return self._embedder

    def close(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None

    @contextlib.asynccontextmanager
    async def service(self, name: str, settings: Settings | None = None) -> AsyncIterator[Service]:
        """``attune run <name>`` for the duration of the block."""
        self.say(f"  starting attune run {name}")
        running = await start_service(name, settings or self.settings, self.log_dir)
        try:
            yield running
        finally:
            await asyncio.to_thread(running.stop)

    async def profile(
        self, figure: Figure, service: Service, title: str, load: Awaitable[Any] | None = None
    ) -> None:
        """py-spy ``service`` for ``sizes.profile_seconds`` while ``load`` runs; attach the
        summary to ``figure``."""
        seconds = self.sizes.profile_seconds
        self.say(f"  profiling {service.name} (pid {service.pid}) for {seconds:.0f} s: {title}")
        recording = asyncio.create_task(
            profiles.record(service.pid, seconds, self.out, figure.key, title=title)
        )
        try:
            if load is not None:
                await load
        finally:
            figure.profile = await recording


__all__ = ["FULL", "QUICK", "Context", "Sizes"]
