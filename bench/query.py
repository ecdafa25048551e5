"""Query figures at each scale (1k, 10k, 100k items): recommendations and search latency,
recommendations requests/s, each next to the vector search (and embedding) alone.

Per scale:

1. a Qdrant Edge folder holding that many items (MovieLens films, the most-rated first,
   then synthetic items past 9,742; see :mod:`bench.workloads`), written through the
   index's own ``apply`` and then ``optimize()``d (HNSW built), as ``attune dev`` does;
2. raw limits, in this process with nothing else running: ``index.search`` alone with
   each user's profile vector (the mean of their 20 latest films) excluding the films
   they saw, 50 results, as the recommendations do; ``embed_query`` + ``index.search``
   for the search queries;
3. ``attune run query`` on that folder, driven by the load generator: recommendations
   of the 610 MovieLens users with ``recs_concurrency`` clients; search with one client
   (and with eight, reported beside it); recommendations with ``rps_concurrency``
   clients for ``rps_seconds`` for the requests/s.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.loadgen import failures
from bench.results import Figure, Target
from bench.services import Service, run_loadgen
from bench.stats import growth_exponent, summarize
from bench.workloads import SEARCH_QUERIES, scale_set, unit_rows
from services.app.datasets import rich_progress
from services.common.redis import make_redis
from services.common.userstore.keys import UserModelKeys
from services.common.vectorindex import ItemFilter, VectorIndex, open_vector_index
from services.embedder.apply import item_point

RECS_TARGET = Target("at_most", 10.0, "p99 <= 10 ms")
SEARCH_TARGET = Target("at_most", 25.0, "p99 <= 25 ms")
RPS_TARGET = Target("at_least", 1_000.0, ">= 1,000 req/s")
SCALING_TARGET = Target("at_most", 1.5, "p99 at the largest index <= 1.5x p99 at the one before")
PERSONALIZED = '"strategy":"personalized"'
PROFILE_ITEMS = 20
LIMIT = 10
POOL = 50  # what the recommendations ask of the index for a limit of 10
SEARCH_CONCURRENT_CLIENTS = 8


def _open_index(ctx: Context, path: Path) -> VectorIndex:
    """The index ``attune run query`` opens with ``ATTUNE_VECTOR_INDEX_PATH=path``."""
    assert ctx.vectors is not None
    settings = ctx.settings.model_copy(update={"vector_index_path": path})
    return open_vector_index(settings, int(ctx.vectors.shape[1]))


async def build_index(ctx: Context, size: int) -> Path:
    """The Qdrant Edge folder of one scale (built once per run)."""
    if size in ctx.scale_dirs:
        return ctx.scale_dirs[size]
    assert ctx.vectors is not None
    scale = scale_set(ctx.data, ctx.vectors, size)
    path = ctx.work / f"index-{size}"
    index = _open_index(ctx, path)
    await index.ensure_ready()
    began = time.perf_counter()
    with rich_progress(f"index of {size:,} items", console=ctx.console) as progress:
        for start in range(0, size, 2_000):
            stop = min(start + 2_000, size)
            await index.apply(
                [item_point(scale.items[i], scale.vectors[i]) for i in range(start, stop)]
            )
            progress(stop, size)
    write_s = time.perf_counter() - began
    began = time.perf_counter()
    await index.optimize()
    optimize_s = time.perf_counter() - began
    count = await index.count(ctx.tenant)
    await index.close()
    ctx.say(
        f"  {count:,} items ({scale.synthetic:,} synthetic) written in {write_s:.1f} s, "
        f"optimized in {optimize_s:.1f} s"
    )
    ctx.results.series.setdefault("indexes", {})[str(size)] = {
        "items": count, "synthetic": scale.synthetic, "write_s": write_s,
        "optimize_s": optimize_s,
    }  # fmt: skip
    ctx.scale_dirs[size] = path
    return path


async def recent_items(ctx: Context, users: list[str]) -> dict[str, list[str]]:
    """Each user's recent items, newest first, as the user model holds them."""
    keys = UserModelKeys(ctx.settings.redis_namespace)
    redis = make_redis(ctx.settings)
    try:
        pipe = redis.pipeline(transaction=False)
        for user in users:
            pipe.zrevrange(keys.user(ctx.tenant, user).recent, 0, 199)
        found = await pipe.execute()
    finally:
        await redis.aclose()
    return {u: [i.decode() for i in items] for u, items in zip(users, found, strict=True)}


async def raw_limits(
    ctx: Context, size: int, path: Path, recent: dict[str, list[str]]
) -> dict[str, Any]:
    """Latencies (ms) of the vector search alone and of embedding + search alone."""
    assert ctx.vectors is not None
    row_of = {item.item_id: row for row, item in enumerate(ctx.data.items)}
    probes = []
    for items in recent.values():
        rows = [row_of[i] for i in items[:PROFILE_ITEMS] if i in row_of]
        if rows:
            profile = unit_rows(ctx.vectors[rows].mean(axis=0, keepdims=True))[0]
            probes.append((profile.tolist(), ItemFilter(ctx.tenant, exclude_item_ids=set(items))))
    random.Random(size).shuffle(probes)
    index = _open_index(ctx, path)
    await index.ensure_ready()
    embedder = await ctx.embedder()
    search_ms, embed_search_ms = [], []
    try:
        for vector, item_filter in probes[:20]:  # warm-up
            await index.search(vector, item_filter, POOL)
        for n in range(ctx.sizes.raw_searches):
            vector, item_filter = probes[n % len(probes)]
            began = time.perf_counter()
            await index.search(vector, item_filter, POOL)
            search_ms.append((time.perf_counter() - began) * 1000)
        everything = ItemFilter(ctx.tenant)
        for n in range(ctx.sizes.raw_embed_searches):
            began = time.perf_counter()
            query = await embedder.embed_query(SEARCH_QUERIES[n % len(SEARCH_QUERIES)])
            await index.search(query, everything, 10)
            embed_search_ms.append((time.perf_counter() - began) * 1000)
    finally:
        await index.close()
    return {"search": search_ms, "embed_search": embed_search_ms}


def _recs_requests(users: list[str], tenant: str) -> list[dict[str, Any]]:
    order = list(users)
    random.Random(11).shuffle(order)
    headers = {"X-Attune-Tenant": tenant}
    path = "/v1/users/{}/recommendations?limit=" + str(LIMIT)
    return [{"method": "GET", "path": path.format(u), "headers": headers} for u in order]


def _search_requests(tenant: str) -> list[dict[str, Any]]:
    import json

    headers = {"X-Attune-Tenant": tenant, "Content-Type": "application/json"}
    return [
        {"method": "POST", "path": "/v1/search", "headers": headers,
         "body": json.dumps({"query": q, "limit": 10})}
        for q in SEARCH_QUERIES
    ]  # fmt: skip


def _closed(service: Service, requests: list[dict[str, Any]], *, concurrency: int, warmup: int,
            count: int, seconds: float, match: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "mode": "closed", "host": "127.0.0.1", "port": service.port, "requests": requests,
        "concurrency": concurrency, "warmup": warmup, "max_requests": count,
        "max_seconds": seconds, "match": match, "timeout_s": 30.0,
    }  # fmt: skip


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    return await run_loadgen(spec, timeout_s=float(spec["max_seconds"]) + 90)


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


def _merged(*counts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for found in counts:
        for reason, count in found.items():
            total[reason] = total.get(reason, 0) + count
    return total


async def run_scale(
    ctx: Context, size: int, users: list[str], recent: dict[str, list[str]]
) -> dict[str, Any]:
    sizes = ctx.sizes
    path = await build_index(ctx, size)
    raw = await raw_limits(ctx, size, path, recent)
    raw_search, raw_embed = summarize(raw["search"]), summarize(raw["embed_search"])
    ctx.say(
        f"  {size:,} items, alone: search p50 {raw_search['p50']:.2f} / p99 "
        f"{raw_search['p99']:.2f} ms; embed+search p50 {raw_embed['p50']:.2f} / p99 "
        f"{raw_embed['p99']:.2f} ms"
    )
    recs_requests, search_requests = _recs_requests(users, ctx.tenant), _search_requests(ctx.tenant)
    settings = ctx.settings.model_copy(update={"vector_index_path": path})
    point: dict[str, Any] = {"items": size, "users": len(users)}
    async with ctx.service("query", settings) as service:
        recs = await _load(_closed(
            service, recs_requests, concurrency=sizes.recs_concurrency, warmup=200,
            count=sizes.recs_requests, seconds=sizes.recs_seconds, match=PERSONALIZED,
        ))  # fmt: skip
        search = await _load(_closed(
            service, search_requests, concurrency=1, warmup=20, count=sizes.search_requests,
            seconds=30,
        ))  # fmt: skip
        search8 = await _load(_closed(
            service, search_requests, concurrency=SEARCH_CONCURRENT_CLIENTS, warmup=20,
            count=sizes.search_concurrent_requests, seconds=30,
        ))  # fmt: skip
        rps = await _load(_closed(
            service, recs_requests, concurrency=sizes.rps_concurrency, warmup=200,
            count=10_000_000, seconds=sizes.rps_seconds, match=PERSONALIZED,
        ))  # fmt: skip
        point.update(
            recs=summarize(recs["latencies_ms"]),
            recs_personalized=recs["matched"] / max(recs["completed"], 1),
            recs_rate=recs["rate_per_s"],
            recs_errors=failures(recs),
            search=summarize(search["latencies_ms"]),
            search_errors=_merged(failures(search), failures(search8)),
            search_c8=summarize(search8["latencies_ms"]),
            rps=rps["rate_per_s"],
            rps_latency=summarize(rps["latencies_ms"]),
            rps_errors=failures(rps),
            raw_search=raw_search,
            raw_embed_search=raw_embed,
        )  # fmt: skip
        recs_ms, search_ms, nan = point["recs"], point["search"], float("nan")
        ctx.say(
            f"  {size:,} items, attune run query: recommendations p50 "
            f"{recs_ms.get('p50', nan):.1f} / p99 {recs_ms.get('p99', nan):.1f} ms "
            f"({sizes.recs_concurrency} clients); search p50 {search_ms.get('p50', nan):.1f} / "
            f"p99 {search_ms.get('p99', nan):.1f} ms; {point['rps']:,.0f} req/s; failed: "
            f"{_merged(point['recs_errors'], point['search_errors'], point['rps_errors']) or 0}"
        )
        if size == sizes.headline_scale:
            ctx.results.series["latency_headline"] = {
                "items": size,
                "recommendations": _rounded(recs["latencies_ms"]),
                "search": _rounded(search["latencies_ms"]),
                "raw_search": _rounded(raw["search"]),
                "raw_embed_search": _rounded(raw["embed_search"]),
            }
            _headline_figures(ctx, point)
            await _profile_misses(ctx, service, recs_requests, search_requests)
    return point


def _headline_figures(ctx: Context, point: dict[str, Any]) -> None:
    size = point["items"]
    ctx.results.add(Figure(
        key="recommendations",
        title=f"recommendations latency at {size // 1000}k items, "
        f"{ctx.sizes.recs_concurrency} concurrent clients",
        measured=point["recs"].get("p99"), unit="ms", raw=point["raw_search"].get("p99"),
        raw_label="the vector search alone, p99, one client", target=RECS_TARGET,
        failures=point["recs_errors"],
        details={"latency_ms": point["recs"], "raw_search_ms": point["raw_search"],
                 "personalized_share": point["recs_personalized"],
                 "clients": ctx.sizes.recs_concurrency, "users": point["users"],
                 "limit": LIMIT, "pool": POOL,
                 "requests_per_s": point["recs_rate"], "errors": point["recs_errors"]},
    ))  # fmt: skip
    ctx.results.add(Figure(
        key="search",
        title=f"search latency at {size // 1000}k items (query embedding included)",
        measured=point["search"].get("p99"), unit="ms",
        raw=point["raw_embed_search"].get("p99"),
        raw_label="embedding + vector search alone, p99, one client", target=SEARCH_TARGET,
        failures=point["search_errors"],
        details={"latency_ms": point["search"], "clients": 1,
                 "queries": len(SEARCH_QUERIES),
                 "clients_concurrent": SEARCH_CONCURRENT_CLIENTS,
                 "latency_ms_8_clients": point["search_c8"],
                 "raw_embed_search_ms": point["raw_embed_search"],
                 "errors": point["search_errors"]},
    ))  # fmt: skip
    ctx.results.add(Figure(
        key="rps",
        title="requests/s for recommendations (uvicorn, 1 worker)",
        measured=point["rps"], unit="req/s", target=RPS_TARGET, failures=point["rps_errors"],
        details={"items": size, "clients": ctx.sizes.rps_concurrency,
                 "seconds": ctx.sizes.rps_seconds,
                 "latency_ms": point["rps_latency"], "errors": point["rps_errors"]},
    ))  # fmt: skip


async def _profile_misses(ctx: Context, service: Service, recs: list[dict[str, Any]],
                          search: list[dict[str, Any]]) -> None:  # fmt: skip
    if not ctx.profiles:
        return
    seconds = ctx.sizes.profile_seconds + 2
    recs_figure, rps_figure = ctx.results.figure("recommendations"), ctx.results.figure("rps")
    if (recs_figure and recs_figure.met is False) or (rps_figure and rps_figure.met is False):
        load = asyncio.ensure_future(_load(_closed(
            service, recs, concurrency=ctx.sizes.recs_concurrency, warmup=0, count=10_000_000,
            seconds=seconds,
        )))  # fmt: skip
        target = recs_figure if recs_figure and recs_figure.met is False else rps_figure
        assert target is not None
        await ctx.profile(target, service, "attune run query under GET recommendations", load)
        for figure in (recs_figure, rps_figure):
            if figure is not None and figure.met is False and figure is not target:
                figure.profile = target.profile
    search_figure = ctx.results.figure("search")
    if search_figure is not None and search_figure.met is False:
        load = asyncio.ensure_future(_load(_closed(
            service, search, concurrency=1, warmup=0, count=10_000_000, seconds=seconds,
        )))  # fmt: skip
        await ctx.profile(search_figure, service, "attune run query under POST /v1/search", load)


async def run(ctx: Context) -> None:
    ctx.say("[bold]query[/bold]: recommendations and search over HTTP vs the index alone")
    users = ctx.data.user_ids()
    recent = await recent_items(ctx, users)
    points = []
    for size in ctx.sizes.scales:
        points.append(await run_scale(ctx, size, users, recent))
    ctx.results.series["scaling"] = points
    if len(points) >= 2:
        ctx.results.add(scaling_figure(points))


SERVED = (("recs", "recommendations"), ("search", "search"))


def scaling_figure(points: list[dict[str, Any]]) -> Figure:
    """How p99 grows from the index before the largest to the largest (the worst of
    recommendations and search), with every failed request at any size counted."""
    sizes = [p["items"] for p in points]
    before, largest = points[-2], points[-1]
    growth: dict[str, float | None] = {}
    for key, name in SERVED:
        low, high = before[key].get("p99"), largest[key].get("p99")
        growth[name] = high / low if low and high is not None else None
    known = {k: v for k, v in growth.items() if v is not None}
    worst = max(known, key=lambda k: known[k]) if known else None
    exponents: dict[str, float] = {}
    for key in ("recs", "search", "raw_search"):
        for q in ("p50", "p99"):
            values = [p[key].get(q) for p in points]
            if all(values):
                exponents[f"{key} {q}"] = growth_exponent(sizes, values)
    failed = _merged(*(
        p.get(f"{key}_errors", {}) for p in points for key in ("recs", "search", "rps")
    ))  # fmt: skip
    return Figure(
        key="scaling",
        title=f"scaling: p99 at {sizes[-1]:,} items / p99 at {sizes[-2]:,} items",
        measured=known[worst] if worst else None, unit="x", target=SCALING_TARGET,
        failures=failed,
        details={"p99_growth": growth, "worst": worst, "items": sizes, "exponents": exponents,
                 "rps": [p["rps"] for p in points]},
        notes=["p99 of the largest index over p99 of the one before, for recommendations "
               "and search over HTTP; the worst of the two"],
    )  # fmt: skip


__all__ = ["build_index", "recent_items", "run", "scaling_figure"]
