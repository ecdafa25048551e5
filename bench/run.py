"""One benchmark run: the embedded stack, the phases in order, the outputs.

Phases and the figures they give:

- ``embedder``: embedder docs/s (and the vectors of every film for the query figures);
- ``usermodel``: usermodel events/s and the memory of the user model;
- ``ingest``: ingest events/s;
- ``query``: latency at a fixed offered rate of recommendations, similar items, trending
  and search, recommendations requests/s at saturation (wrk), the bare ceiling, scaling;
- ``freshness``: event posted -> visible in recommendations.

A phase that needs another's output (the query figures need the films' vectors and the
users' models) gets it without its figures when that phase is not selected.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from bench import embedder, freshness, ingest, memory, query, usermodel
from bench.context import FULL, QUICK, Context
from bench.machine import load_average, machine_info
from bench.results import Results
from bench.workloads import load_movielens
from services.app.embedded import EmbeddedStack
from services.common.settings import Settings

log = logging.getLogger(__name__)

PHASES = ("embedder", "usermodel", "ingest", "query", "freshness")
ALIASES = {
    "memory": "usermodel",
    "recommendations": "query",
    "recommendations_rps": "query",
    "similar": "query",
    "trending": "query",
    "search": "query",
    "ceiling": "query",
    "rps": "query",
    "scaling": "query",
}


def select_phases(only: Iterable[str]) -> tuple[str, ...]:
    """The phases to run, in run order; raise ValueError on an unknown name."""
    wanted = set()
    for name in only:
        phase = ALIASES.get(name, name)
        if phase not in PHASES:
            known = ", ".join([*PHASES, *ALIASES])
            raise ValueError(f"unknown figure or phase {name!r}: one of {known}")
        wanted.add(phase)
    return tuple(p for p in PHASES if p in wanted) if wanted else PHASES


@dataclass(frozen=True)
class Options:
    quick: bool
    only: tuple[str, ...]
    out: Path
    data: Path
    profiles: bool
    command: str


async def _timed(ctx: Context, name: str, phase: Callable[[Context], Awaitable[None]]) -> None:
    """Run one phase; a failure is reported (and the run goes on with the next phase)."""
    began = time.monotonic()
    try:
        await phase(ctx)
    except Exception as error:
        log.exception("phase %s failed", name)
        ctx.results.notes.append(f"the {name} phase failed: {type(error).__name__}: {error}")
        ctx.say(f"[red]{name} failed: {type(error).__name__}: {error}[/red]")
    finally:
        ctx.results.phases[name] = round(time.monotonic() - began, 1)


async def run_bench(options: Options, console: Console) -> Results:
    phases = select_phases(options.only)
    results = Results(
        started_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=options.command,
        quick=options.quick,
        machine=machine_info(),
        load_before=load_average(),
    )
    began = time.monotonic()
    console.print(f"phases: {', '.join(phases)}; load average {results.load_before}")
    data = load_movielens(options.data)
    results.workload = {
        "dataset": options.data.name, "items": len(data.items), "events": len(data.events),
    }  # fmt: skip
    gc.freeze()  # the parsed data set stays: keep it out of every garbage collection
    with tempfile.TemporaryDirectory(prefix="attune-bench-") as folder:
        work = Path(folder)
        async with EmbeddedStack(work / "stack") as stack:
            ctx = Context(
                sizes=QUICK if options.quick else FULL,
                quick=options.quick,
                console=console,
                settings=stack.settings(Settings()),
                work=work,
                out=options.out,
                results=results,
                data=data,
                run_id=uuid.uuid4().hex[:8],
                profiles=options.profiles,
            )
            try:
                await _phases(ctx, phases)
            finally:
                ctx.close()
    results.duration_s = time.monotonic() - began
    results.load_after = load_average()
    return results


async def _phases(ctx: Context, phases: tuple[str, ...]) -> None:
    needs_vectors = {"query", "freshness"} & set(phases)
    needs_users = "query" in phases
    if "embedder" in phases:
        await _timed(ctx, "embedder", embedder.run)
    elif needs_vectors:
        ctx.say("[bold]vectors[/bold] of the films (cache or embedding), for the query figures")
        await _timed(ctx, "vectors", lambda c: embedder.ensure_vectors(c))
    if "usermodel" in phases:
        await _timed(ctx, "usermodel", usermodel.run)
        await _timed(ctx, "memory", memory.run)
        await _timed(ctx, "memory bounds", memory.run_bounds)
    elif needs_users:
        ctx.say("[bold]users[/bold]: folding the MovieLens ratings for the query figures")
        await _timed(ctx, "users", usermodel.fold_live_only)
    if "ingest" in phases:
        await _timed(ctx, "ingest", ingest.run)
    if "query" in phases:
        await _timed(ctx, "query", query.run)
    if "freshness" in phases:
        await _timed(ctx, "freshness", freshness.run)


__all__ = ["ALIASES", "PHASES", "Options", "run_bench", "select_phases"]
