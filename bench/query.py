"""Query figures at each scale (1k, 10k, 100k items): latency at a fixed offered rate
(open loop) and requests/s at saturation (wrk), each next to its raw limit.

Once per run, the bare ceiling (:mod:`bench.ceiling`: one Redis GET, a numpy blend, an
orjson answer; its own process) under the same open loop and the same wrk settings: the
raw limit of the recommendations figures. Per scale:

1. a Qdrant Edge folder holding that many items (MovieLens films, the most-rated first,
   then synthetic items past 9,742; see :mod:`bench.workloads`), written through the
   index's own ``apply`` and then ``optimize()``d (HNSW built), as ``attune dev`` does;
2. raw limits, in this process with nothing else running: ``index.search`` alone with
   each user's profile vector (the mean of their 20 latest films) excluding the films
   they saw, 50 results, as the recommendations do; an item's vector retrieved and
   searched, as similar items do; ``embed_query`` + ``index.search`` for the search
   queries;
3. ``attune run query`` on that folder, driven by the load generator (open loop, at the
   rates of :mod:`bench.served`) for recommendations of the 610 MovieLens users (their
   real histories folded) and search, and at the headline scale similar items and
   trending too; then wrk for recommendations at saturation.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from bench import served
from bench.context import Context
from bench.query_figures import headline_figures, profile_misses
from bench.results import Figure, Target
from bench.stats import growth_exponent, summarize
from bench.workloads import SEARCH_QUERIES, scale_set, unit_rows
from services.app.datasets import rich_progress
from services.common.redis import make_redis
from services.common.userstore.keys import UserModelKeys
from services.common.vectorindex import ItemFilter, VectorIndex, open_vector_index
from services.embedder.apply import item_point

SCALING_TARGET = Target("at_most", 1.5, "p99 at the largest index <= 1.5x p99 at the one before")
PROFILE_ITEMS = 20
POOL = 50  # what the recommendations ask of the index for a limit of 10
SIMILAR_POOL = served.LIMIT * 3  # what similar items ask of the index


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
    ctx: Context, size: int, path: Path, recent: dict[str, list[str]], similar: list[str]
) -> dict[str, list[float]]:
    """Latencies (ms) of the vector search alone, of an item's vector retrieved and
    searched alone (``similar``: item ids) and of embedding + search alone."""
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
    search_ms, similar_ms, embed_search_ms = [], [], []
    try:
        for vector, item_filter in probes[:20]:  # warm-up
            await index.search(vector, item_filter, POOL)
        for n in range(ctx.sizes.raw_searches):
            vector, item_filter = probes[n % len(probes)]
            began = time.perf_counter()
            await index.search(vector, item_filter, POOL)
            search_ms.append((time.perf_counter() - began) * 1000)
        for n in range(ctx.sizes.raw_searches):
            item_id = similar[n % len(similar)]
            began = time.perf_counter()
            found = await index.retrieve(ctx.tenant, [item_id], with_vectors=True)
            if found and found[0].vector:
                others = ItemFilter(ctx.tenant, exclude_item_ids={item_id})
                await index.search(found[0].vector, others, SIMILAR_POOL)
            similar_ms.append((time.perf_counter() - began) * 1000)
        everything = ItemFilter(ctx.tenant)
        for n in range(ctx.sizes.raw_embed_searches):
            began = time.perf_counter()
            query = await embedder.embed_query(SEARCH_QUERIES[n % len(SEARCH_QUERIES)])
            await index.search(query, everything, 10)
            embed_search_ms.append((time.perf_counter() - began) * 1000)
    finally:
        await index.close()
    return {"search": search_ms, "similar": similar_ms, "embed_search": embed_search_ms}


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


def _merged(*counts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for found in counts:
        for reason, count in found.items():
            total[reason] = total.get(reason, 0) + count
    return total


def similar_ids(ctx: Context, size: int) -> list[str]:
    """The films asked for their similar items: the most-rated, in every index."""
    order = ctx.data.items_by_popularity()[: min(served.SIMILAR_ITEMS, size)]
    return [ctx.data.items[i].item_id for i in order]


async def run_scale(
    ctx: Context, size: int, users: list[str], recent: dict[str, list[str]],
    ceiling: dict[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    sizes = ctx.sizes
    path = await build_index(ctx, size)
    items = similar_ids(ctx, size)
    raw = await raw_limits(ctx, size, path, recent, items)
    summaries = {name: summarize(values) for name, values in raw.items()}
    raw_search, raw_embed = summaries["search"], summaries["embed_search"]
    ctx.say(
        f"  {size:,} items, alone: search p50 {raw_search['p50']:.2f} / p99 "
        f"{raw_search['p99']:.2f} ms; embed+search p50 {raw_embed['p50']:.2f} / p99 "
        f"{raw_embed['p99']:.2f} ms"
    )
    endpoints = {
        "recommendations": served.recommendations(users, ctx.tenant),
        "similar": served.similar(items, ctx.tenant),
        "trending": served.trending(ctx.tenant),
        "search": served.search(ctx.tenant),
    }
    headline = size == sizes.headline_scale
    settings = ctx.settings.model_copy(update={"vector_index_path": path})
    point: dict[str, Any] = {"items": size, "users": len(users)}
    async with ctx.service("query", settings) as service:
        primed = {
            name: await served.prime(service, endpoints[name])
            for name in ("recommendations", "similar")
        }
        for name, first in primed.items():
            latency = first["latency_ms"]
            ctx.say(
                f"  {size:,} items, first requests (nothing kept yet): {first['completed']:,} "
                f"{name} in {first['seconds']:.1f} s, p50 {latency.get('p50', float('nan')):.1f}"
                f" / p99 {latency.get('p99', float('nan')):.1f} ms; failed: "
                f"{first['failures'] or 0}; the process held "
                f"{first['resident_mb_before'] or 0:,.0f} MB before, "
                f"{first['resident_mb_after'] or 0:,.0f} MB after"
            )
        results, opened = {}, {}
        for name in ("recommendations", "search", "similar", "trending"):
            if headline or name in ("recommendations", "search"):
                results[name] = await served.open_loop(ctx, service, endpoints[name])
                opened[name] = served.open_summary(results[name])
        if "similar" in opened:
            opened["similar"]["failures"] = _merged(
                opened["similar"]["failures"], primed["similar"]["failures"]
            )
        wrk = await served.saturation(ctx, service, endpoints["recommendations"])
        recs, search = opened["recommendations"], opened["search"]
        point.update(
            # A first request that failed counts against the steady state's figure too.
            recs=recs["latency_ms"],
            recs_errors=_merged(recs["failures"], primed["recommendations"]["failures"]),
            recs_offered_per_s=recs["offered_per_s"],
            recs_personalized=recs["matched_share"],
            loadgen_cpu_share=recs["loadgen_cpu_share"],
            search=search["latency_ms"], search_errors=search["failures"],
            search_offered_per_s=search["offered_per_s"],
            rps=wrk.get("rate_per_s"), rps_latency=wrk.get("latency_ms", {}),
            rps_errors=wrk["failures"], rps_wrk=wrk,
            raw_search=raw_search, raw_embed_search=raw_embed, first_requests=primed,
        )  # fmt: skip
        nan = float("nan")
        ctx.say(
            f"  {size:,} items, attune run query, open loop: recommendations p50 "
            f"{recs['latency_ms'].get('p50', nan):.1f} / p99 "
            f"{recs['latency_ms'].get('p99', nan):.1f} ms at {recs['offered_per_s']:,.0f} "
            f"req/s (load generator: {recs['loadgen_cpu_share']:.0%} of a core; server busy "
            f"{recs['settle_s']:.1f} s after); search p50 "
            f"{search['latency_ms'].get('p50', nan):.1f} / p99 "
            f"{search['latency_ms'].get('p99', nan):.1f} ms at {search['offered_per_s']:,.0f} "
            f"req/s; wrk: {nan if point['rps'] is None else point['rps']:,.0f} req/s; failed: "
            f"{_merged(point['recs_errors'], point['search_errors'], point['rps_errors']) or 0}"
        )
        if headline:
            for name in ("similar", "trending"):
                p99 = opened[name]["latency_ms"].get("p99", nan)
                ctx.say(f"  {name}: p99 {p99:.1f} ms at {opened[name]['offered_per_s']:,.0f} "
                        f"req/s; failed: {opened[name]['failures'] or 0}")  # fmt: skip
            ctx.results.series["latency_headline"] = {
                "items": size,
                **{name: _rounded(result["latencies_ms"]) for name, result in results.items()},
                "ceiling": (ceiling or {}).get("latencies_ms", []),
                "raw_search": _rounded(raw["search"]),
                "raw_embed_search": _rounded(raw["embed_search"]),
            }
            headline_figures(ctx, point, ceiling, opened, summaries, SIMILAR_POOL)
            await profile_misses(ctx, service, endpoints)
    point.pop("rps_wrk")
    return point


async def run(ctx: Context) -> None:
    ctx.say("[bold]query[/bold]: recommendations, similar, trending and search over HTTP vs "
            "the bare ceiling and the index alone")  # fmt: skip
    users = ctx.data.user_ids()
    recent = await recent_items(ctx, users)
    ceiling = await served.measure_ceiling(ctx, users)
    points = []
    for size in ctx.sizes.scales:
        points.append(await run_scale(ctx, size, users, recent, ceiling))
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
    failed = _merged(*(p.get(f"{key}_errors", {}) for p in points for key, _ in SERVED))
    return Figure(
        key="scaling",
        title=f"scaling: p99 at {sizes[-1]:,} items / p99 at {sizes[-2]:,} items (open loop)",
        measured=known[worst] if worst else None, unit="x", target=SCALING_TARGET,
        failures=failed,
        details={"p99_growth": growth, "worst": worst, "items": sizes, "exponents": exponents,
                 "rps": [p["rps"] for p in points]},
        notes=["p99 of the largest index over p99 of the one before, for recommendations "
               "and search over HTTP at their fixed offered rates; the worst of the two"],
    )  # fmt: skip


__all__ = ["build_index", "recent_items", "run", "scaling_figure"]
