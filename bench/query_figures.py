"""The query figures at the headline index: latency at a fixed offered rate (open loop)
for recommendations, similar items, trending and search; recommendations requests/s at
saturation (wrk); each next to its raw limit. And py-spy of the query service for each
target missed, under the same load that missed it."""

from __future__ import annotations

import asyncio
from typing import Any

from bench import served
from bench.ceiling import CANDIDATES
from bench.context import Context
from bench.results import Figure, Target
from bench.services import Service
from bench.workloads import SEARCH_QUERIES

RECS_TARGET = Target("at_most", 3.0, "p99 <= 3 ms")
RPS_TARGET = Target("at_least", 2_000.0, ">= 2,000 req/s")
SIMILAR_TARGET = Target("at_most", 3.0, "p99 <= 3 ms")
TRENDING_TARGET = Target("at_most", 2.0, "p99 <= 2 ms")
SEARCH_TARGET = Target("at_most", 10.0, "p99 <= 10 ms")
CEILING_LABEL = "the bare ceiling: one Redis GET, a numpy blend, orjson; Starlette on uvicorn"


def _rate(summary: dict[str, Any]) -> str:
    return f"{summary['offered_per_s']:,.0f} req/s offered (open loop)"


def _open_details(summary: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {**{k: v for k, v in summary.items() if k != "failures"},
            "errors": summary["failures"], **more}  # fmt: skip


def headline_figures(
    ctx: Context, point: dict[str, Any], ceiling: dict[str, Any] | None,
    opened: dict[str, dict[str, Any]], raw: dict[str, dict[str, float]], pool: int,
) -> None:  # fmt: skip
    """The figures of the headline index from its open loops (``opened`` by endpoint),
    its wrk run (``point["rps_wrk"]``), the bare ceiling and the raw limits (``pool``: the
    results the raw similar search asks for)."""
    size, kilo = point["items"], f"{point['items'] // 1000}k items"
    ceiling_open = (ceiling or {}).get("open", {})
    ceiling_wrk = (ceiling or {}).get("wrk", {})
    recs = opened["recommendations"]
    ctx.results.add(Figure(
        key="recommendations",
        title=f"recommendations latency at {kilo}, {_rate(recs)}",
        measured=recs["latency_ms"].get("p99"), unit="ms",
        raw=ceiling_open.get("latency_ms", {}).get("p99"),
        raw_label=f"{CEILING_LABEL}; p99 at the same rate", target=RECS_TARGET,
        failures=recs["failures"],
        details=_open_details(
            recs, items=size, users=point["users"], limit=served.LIMIT,
            ceiling=ceiling_open, ceiling_candidates=CANDIDATES, raw_search_ms=raw["search"],
        ),
    ))  # fmt: skip
    wrk = point["rps_wrk"]
    ctx.results.add(Figure(
        key="recommendations_rps",
        title=f"recommendations req/s at saturation (wrk, {ctx.sizes.wrk_connections} "
        "connections; uvicorn, 1 worker)",
        measured=wrk.get("rate_per_s"), unit="req/s", raw=ceiling_wrk.get("rate_per_s"),
        raw_label=f"{CEILING_LABEL}; the same wrk settings", target=RPS_TARGET,
        failures=wrk["failures"],
        details={"items": size, "wrk": {k: v for k, v in wrk.items() if k != "failures"},
                 "errors": wrk["failures"], "ceiling": ceiling_wrk},
    ))  # fmt: skip
    similar = opened["similar"]
    ctx.results.add(Figure(
        key="similar",
        title=f"similar items latency at {kilo}, {_rate(similar)}",
        measured=similar["latency_ms"].get("p99"), unit="ms", raw=raw["similar"].get("p99"),
        raw_label="the item's vector retrieved and searched alone, p99, one client",
        target=SIMILAR_TARGET, failures=similar["failures"],
        details=_open_details(similar, items=size, limit=served.LIMIT, pool=pool,
                              similar_items=served.SIMILAR_ITEMS, raw_ms=raw["similar"]),
    ))  # fmt: skip
    trending = opened["trending"]
    ctx.results.add(Figure(
        key="trending",
        title=f"trending latency, {_rate(trending)}",
        measured=trending["latency_ms"].get("p99"), unit="ms",
        raw=ceiling_open.get("latency_ms", {}).get("p99"),
        raw_label=f"{CEILING_LABEL}; p99 at the same rate", target=TRENDING_TARGET,
        failures=trending["failures"], details=_open_details(trending, limit=served.LIMIT),
    ))  # fmt: skip
    search = opened["search"]
    ctx.results.add(Figure(
        key="search",
        title=f"search latency at {kilo} (query embedding included), {_rate(search)}",
        measured=search["latency_ms"].get("p99"), unit="ms",
        raw=raw["embed_search"].get("p99"),
        raw_label="embedding + vector search alone, p99, one client", target=SEARCH_TARGET,
        failures=search["failures"],
        details=_open_details(search, items=size, queries=len(SEARCH_QUERIES),
                              raw_embed_search_ms=raw["embed_search"]),
    ))  # fmt: skip


async def profile_misses(ctx: Context, service: Service,
                         endpoints: dict[str, served.Endpoint]) -> None:  # fmt: skip
    """py-spy the query service for each missed latency target under its open loop, and
    for a missed saturation target under wrk."""
    if not ctx.profiles:
        return
    seconds = ctx.sizes.profile_seconds + 2
    for key, endpoint in endpoints.items():
        figure = ctx.results.figure(key)
        if figure is None or figure.met is not False:
            continue
        load = asyncio.ensure_future(
            served.open_loop(ctx, service, endpoint, seconds=seconds, warmup_s=0)
        )
        await ctx.profile(
            figure, service, f"attune run query at {endpoint.rate:,.0f} req/s of {key}", load
        )
    rps = ctx.results.figure("recommendations_rps")
    if rps is None or rps.met is not False:
        return
    recs = ctx.results.figure("recommendations")
    if rps.details.get("wrk", {}).get("error"):
        if recs is not None and recs.profile:
            rps.profile = recs.profile  # no wrk: the open loop's profile is the best we have
        return
    load = asyncio.ensure_future(
        served.saturation(ctx, service, endpoints["recommendations"], seconds=seconds)
    )
    await ctx.profile(rps, service, "attune run query saturated by wrk (recommendations)", load)


__all__ = [
    "RECS_TARGET", "RPS_TARGET", "SEARCH_TARGET", "SIMILAR_TARGET", "TRENDING_TARGET",
    "headline_figures", "profile_misses",
]  # fmt: skip
