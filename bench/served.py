"""A query server under HTTP load: the requests of each endpoint, an open loop at a fixed
rate (:mod:`bench.openloop`, in the load generator's process), throughput at saturation
(:mod:`bench.wrk`), and the bare ceiling (:mod:`bench.ceiling`) measured both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.httpclient import failures
from bench.services import Service, run_loadgen, settings_env, start_process
from bench.stats import summarize
from bench.workloads import SEARCH_QUERIES
from bench.wrk import run_wrk, wrk_failures
from services.app.embedded import free_port

LIMIT = 10
PERSONALIZED = '"strategy":"personalized"'
RECS_RATE = 200.0
SIMILAR_RATE = 200.0
TRENDING_RATE = 200.0
SEARCH_RATE = 50.0
TIMEOUT_S = 2.0  # from the scheduled send time: a request waiting longer has failed
SIMILAR_ITEMS = 500  # the most-rated films, asked for their similar items in turn
IDLE_SHARE = 0.1
IDLE_WINDOW_S = 0.5


@dataclass(frozen=True)
class Endpoint:
    """The requests of one figure, sent in turn at ``rate`` per second."""

    name: str
    rate: float
    requests: list[dict[str, Any]]
    match: str | None = None


def recommendations(users: list[str], tenant: str) -> Endpoint:
    order = list(users)
    random.Random(11).shuffle(order)
    headers = {"X-Attune-Tenant": tenant}
    requests = [
        {"method": "GET", "path": f"/v1/users/{u}/recommendations?limit={LIMIT}",
         "headers": headers}
        for u in order
    ]  # fmt: skip
    return Endpoint("recommendations", RECS_RATE, requests, PERSONALIZED)


def similar(item_ids: list[str], tenant: str) -> Endpoint:
    headers = {"X-Attune-Tenant": tenant}
    requests = [
        {"method": "GET", "path": f"/v1/items/{i}/similar?limit={LIMIT}", "headers": headers}
        for i in item_ids
    ]
    return Endpoint("similar", SIMILAR_RATE, requests)


def trending(tenant: str) -> Endpoint:
    headers = {"X-Attune-Tenant": tenant}
    requests = [{"method": "GET", "path": f"/v1/trending?limit={LIMIT}", "headers": headers}]
    return Endpoint("trending", TRENDING_RATE, requests)


def search(tenant: str) -> Endpoint:
    headers = {"X-Attune-Tenant": tenant, "Content-Type": "application/json"}
    requests = [
        {"method": "POST", "path": "/v1/search", "headers": headers,
         "body": json.dumps({"query": q, "limit": LIMIT})}
        for q in SEARCH_QUERIES
    ]  # fmt: skip
    return Endpoint("search", SEARCH_RATE, requests)


def open_spec(ctx: Context, port: int, endpoint: Endpoint, *, seconds: float | None = None,
              warmup_s: float | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "mode": "open", "host": "127.0.0.1", "port": port, "requests": endpoint.requests,
        "rate_per_s": endpoint.rate, "match": endpoint.match, "timeout_s": TIMEOUT_S,
        "warmup_s": ctx.sizes.open_warmup_s if warmup_s is None else warmup_s,
        "duration_s": ctx.sizes.open_seconds if seconds is None else seconds,
    }  # fmt: skip


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


async def settle(service: Service, *, deadline_s: float = 60.0) -> float:
    """Wait until ``service`` is idle (under ``IDLE_SHARE`` of a core for ``IDLE_WINDOW_S``);
    the seconds it took. A server the load overwhelmed goes on with the requests whose
    clients gave up: left alone, that work would land on the next measurement."""
    began = time.monotonic()
    before = _cpu_seconds(service.pid)
    while before is not None and time.monotonic() - began < deadline_s:
        await asyncio.sleep(IDLE_WINDOW_S)
        after = _cpu_seconds(service.pid)
        if after is None or after - before < IDLE_SHARE * IDLE_WINDOW_S:
            break
        before = after
    return time.monotonic() - began


async def open_loop(ctx: Context, service: Service, endpoint: Endpoint, *,
                    seconds: float | None = None, warmup_s: float | None = None,
                    settled: bool = True) -> dict[str, Any]:  # fmt: skip
    """The open loop's result, every latency included (``latencies_ms``); then, unless
    ``settled`` is False, the wait for the server to go idle (``settle_s``)."""
    spec = open_spec(ctx, service.port, endpoint, seconds=seconds, warmup_s=warmup_s)
    limit = float(spec["warmup_s"]) + float(spec["duration_s"]) + TIMEOUT_S + 60
    result = await run_loadgen(spec, timeout_s=limit)
    if settled:
        result["settle_s"] = await settle(service)
    return result


PRIMING_CLIENTS = 2


async def prime(service: Service, endpoint: Endpoint) -> dict[str, Any]:
    """Each of ``endpoint``'s requests once, two clients at a time: the query process
    keeps what a user's first request gathers, and these first requests are what that
    costs (a cache miss: also what a request right after the user's own event costs).
    Measured and reported apart from the steady state the open loop measures."""
    spec = {
        "mode": "closed", "host": "127.0.0.1", "port": service.port,
        "requests": endpoint.requests, "concurrency": PRIMING_CLIENTS, "timeout_s": TIMEOUT_S,
        "max_requests": len(endpoint.requests), "max_seconds": 600.0,
    }  # fmt: skip
    before = resident_mb(service.pid)
    result = await run_loadgen(spec, timeout_s=660.0)
    after = resident_mb(service.pid)
    return {
        "resident_mb_before": before,
        "resident_mb_after": after,
        "requests": len(endpoint.requests),
        "completed": result["completed"],
        "seconds": result["elapsed_s"],
        "latency_ms": summarize(result["latencies_ms"]),
        "failures": failures(result),
        "clients": PRIMING_CLIENTS,
    }


def open_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What a figure keeps of an open loop: the latency summary, the failures, the rates
    and the load generator's own cost."""
    completed = max(int(result["completed"]), 1)
    return {
        "latency_ms": summarize(result["latencies_ms"]),
        "failures": failures(result),
        "offered_per_s": result["offered_per_s"],
        "achieved_per_s": result["rate_per_s"],
        "scheduled": result["scheduled"],
        "completed": result["completed"],
        "matched_share": result["matched"] / completed,
        "seconds": result["duration_s"],
        "warmup_s": result["warmup_s"],
        "timeout_s": result["timeout_s"],
        "loadgen_cpu_share": result["cpu_share"],
        "loadgen_lateness_ms": result["lateness_ms"],
        "peak_in_flight": result["peak_in_flight"],
        "failure_samples": result["failure_samples"],
        "settle_s": result.get("settle_s"),
    }


async def saturation(ctx: Context, service: Service, endpoint: Endpoint,
                     seconds: float | None = None) -> dict[str, Any]:  # fmt: skip
    """wrk's result (or why it could not run) with its ``failures``; then the wait for
    the server to go idle (``settle_s``)."""
    sizes = ctx.sizes
    result = await run_wrk(
        service.port, endpoint.requests, threads=sizes.wrk_threads,
        connections=sizes.wrk_connections,
        seconds=sizes.wrk_seconds if seconds is None else seconds, timeout_s=TIMEOUT_S,
        work=ctx.work / "wrk",
    )  # fmt: skip
    if "error" in result:
        ctx.say(f"  [red]{result['error']}[/red]")
    return {**result, "failures": wrk_failures(result), "settle_s": await settle(service)}


@contextlib.asynccontextmanager
async def ceiling(ctx: Context, users: list[str]) -> AsyncIterator[Service]:
    """``python -m bench.ceiling`` for the MovieLens users, for the duration of the block."""
    spec = ctx.work / "ceiling.json"
    items = [[item.item_id, item.title] for item in ctx.data.items]
    spec.write_text(json.dumps({"users": users, "items": items}))
    port = free_port()
    argv = [sys.executable, "-m", "bench.ceiling", "--port", str(port), "--spec", str(spec),
            "--prefix", f"bench-ceiling:{ctx.run_id}:"]  # fmt: skip
    ctx.say("  starting the bare ceiling (python -m bench.ceiling)")
    running = await start_process(
        "python -m bench.ceiling", "ceiling", argv, settings_env(ctx.settings), port, ctx.log_dir
    )
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)


async def measure_ceiling(ctx: Context, users: list[str]) -> dict[str, Any]:
    """The bare ceiling's open loop at the recommendations' rate and its wrk req/s."""
    endpoint = recommendations(users, ctx.tenant)
    async with ceiling(ctx, users) as service:
        result = await open_loop(ctx, service, endpoint)
        opened = open_summary(result)
        saturated = await saturation(ctx, service, endpoint)
    p99 = opened["latency_ms"].get("p99", float("nan"))
    ctx.say(
        f"  the bare ceiling: p99 {p99:.2f} ms at {endpoint.rate:,.0f} req/s offered; "
        f"{saturated.get('rate_per_s', float('nan')):,.0f} req/s with wrk; failed: "
        f"{({**opened['failures'], **saturated['failures']}) or 0}"
    )
    latencies = [round(v, 3) for v in result["latencies_ms"]]
    return {"open": opened, "wrk": saturated, "latencies_ms": latencies}


__all__ = [
    "LIMIT", "PERSONALIZED", "Endpoint", "ceiling", "measure_ceiling", "open_loop",
    "open_spec", "open_summary", "recommendations", "saturation", "search", "similar",
    "trending",
]  # fmt: skip
