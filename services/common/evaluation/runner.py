"""Drive the real system through an evaluation on a MovieLens-format folder.

1. Start the embedded stack (broker, Redis, Qdrant Edge) and, in this process, the
   embedder and user-model consumers with the real model.
2. Produce every movie to the content topic and the ratings before the first
   validation cut-off to the events topic; wait until every item is embedded and every
   event folded (as ``attune dev`` does); build the HNSW index.
3. Validation, window by window: with the user model as of the window's cut-off,
   gather each of the window's users' candidates once through the query service's
   :class:`QueryEngine`; then produce and fold the window's ratings. With every window
   gathered, rank every validation user under every weighting of a small grid
   (per-request weight overrides, as the HTTP route passes them) and keep the weights
   with the best mean NDCG@10.
4. Fold up to the test cut-off and score the blend (chosen weights), the baselines,
   the ablations and MMR on the test period's users.
5. Headroom (:mod:`.headroom`, outside the system): what the blend would need on the
   users with history to clear the best baseline's interval, what reference models
   reach there with hindsight, and how many users other test fractions would give.

Every list comes from ``QueryEngine.recommendation_candidates`` + ``QueryEngine.rank``,
exactly what ``GET /v1/users/{id}/recommendations`` runs (a sample is checked over HTTP
too). What the user rated before the cut-off is excluded explicitly (the user model
keeps only each user's latest ``recent_items_limit`` items).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import platform
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prometheus_client import REGISTRY
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from schemas.query import Signal
from services.common.datasets import (
    MOVIELENS_TENANT,
    Rating,
    movielens_events,
    movielens_items,
    movielens_ratings,
    produce,
    rich_progress,
)
from services.common.embedded import EmbeddedStack, free_port
from services.common.evaluation.headroom import (
    reference_models,
    required_with_history,
    split_sizes,
)
from services.common.evaluation.metrics import (
    bootstrap_indices,
    novelty_share,
    paired_difference,
    summarise,
    user_metrics,
)
from services.common.evaluation.split import (
    POSITIVE_RATING,
    Holdout,
    TimeSplit,
    day,
    holdout,
    time_split,
)
from services.common.runner import (
    Dependencies,
    build_http_app,
    include_consumers,
    open_dependencies,
    serve_http,
)
from services.common.settings import Settings
from services.common.vectorindex import ItemFilter
from services.query.app import build_query_engine
from services.query.engine import RECOMMEND_SIGNALS, Candidates, QueryEngine

log = logging.getLogger(__name__)

LIST_LENGTH = 20
DEFAULT_GRID = (0.0, 0.25, 0.5, 1.0)
DIVERSITY_PROBES = (0.2, 0.5)
Weights = dict[Signal, float]


def only(signal: Signal) -> Weights:
    """Weights that keep one signal of the blend."""
    return {s: (1.0 if s == signal else 0.0) for s in RECOMMEND_SIGNALS}


def without(weights: Mapping[Signal, float], signal: Signal) -> Weights:
    return {s: (0.0 if s == signal else w) for s, w in weights.items()}


def weight_grid(values: Sequence[float] = DEFAULT_GRID) -> list[Weights]:
    """Every weighting of the recommendation signals over ``values``. Rankings do not
    change when all weights are multiplied by one number, so only weightings whose
    largest weight is the grid's largest value are kept (no duplicate rankings)."""
    top = max(values)
    grid = []
    for combination in itertools.product(sorted(set(values)), repeat=len(RECOMMEND_SIGNALS)):
        if max(combination) == top and top > 0:
            grid.append(dict(zip(RECOMMEND_SIGNALS, combination, strict=True)))
    return grid


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    description: str
    kind: Literal["engine", "random", "count"] = "engine"
    weights: Weights | None = None
    diversity: float = 0.0


def baselines() -> list[Method]:
    return [
        Method(
            "popular",
            "Most popular (user model)",
            "The user model's all-time popularity "
            "ZSET: summed positive strength (rating above the user's running mean).",
            weights=only("popular"),
        ),
        Method(
            "popular_count",
            "Most popular (count of ratings >= 4)",
            "Counted here from "
            "the training ratings, not through the system: the textbook baseline.",
            kind="count",
        ),
        Method(
            "trending",
            "Trending",
            "The user model's time-decayed popularity (forward "
            "decay, ATTUNE_TRENDING_HALF_LIFE_DAYS).",
            weights=only("trending"),
        ),
        Method(
            "cooccurrence",
            "Item-to-item co-occurrence",
            "The blend with the co-occurrence signal alone.",
            weights=only("cooccurrence"),
        ),
        Method(
            "content",
            "Content vectors",
            "The blend with content similarity to the user's profile vector alone.",
            weights=only("content"),
        ),
        Method("random", "Random", "Seeded random unseen items of the catalog.", kind="random"),
    ]


@dataclass(frozen=True)
class Row:
    """One evaluated user in one held-out period."""

    user_id: str
    period: str
    cutoff: int
    history: frozenset[str]
    targets: frozenset[str]

    @property
    def has_history(self) -> bool:
        return bool(self.history)


def rows_of(period: str, held_out: Holdout) -> list[Row]:
    return [
        Row(u, period, held_out.cutoff, held_out.history.get(u, frozenset()), held_out.targets[u])
        for u in held_out.users
    ]


@dataclass
class Phase:
    """The rows of one role (validation: every window pooled; test) and every method's
    lists and per-row metrics."""

    name: str
    rows: list[Row] = field(default_factory=list)
    candidates: list[Candidates] = field(default_factory=list)
    lists: dict[str, list[list[str]]] = field(default_factory=dict)
    per_user: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def where(self, keep: Callable[[Row], bool]) -> list[int]:
        return [n for n, row in enumerate(self.rows) if keep(row)]

    @property
    def periods(self) -> list[str]:
        return list(dict.fromkeys(row.period for row in self.rows))


@dataclass
class EvaluationConfig:
    folder: Path
    test_fraction: float = 0.1
    validation_fraction: float = 0.1
    validation_windows: int = 3
    grid: Sequence[float] = DEFAULT_GRID
    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 20240501
    work_dir: Path | None = None
    tenant: str = MOVIELENS_TENANT
    wait_timeout_s: float = 900.0
    http_check_users: int = 5


# -- progress --------------------------------------------------------------------------


@contextmanager
def _bar(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


async def _wait_until(
    console: Console, label: str, total: int, done_now: Callable[[], Awaitable[float]],
    timeout_s: float,
) -> None:  # fmt: skip
    """Show a bar until ``done_now()`` reaches ``total``; raise after ``timeout_s``."""
    started = time.monotonic()
    with _bar(console, label, total) as update:
        while True:
            done = int(await done_now())
            update(min(done, total))
            if done >= total:
                return
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{label}: only {done} of {total} after {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


def _folded_events() -> float:
    return REGISTRY.get_sample_value("attune_usermodel_events_total") or 0.0


# -- loading ---------------------------------------------------------------------------


async def load_events(
    deps: Dependencies, console: Console, events: Sequence[Any], label: str, timeout_s: float
) -> None:
    """Produce events and wait until the user model folded all of them."""
    before = _folded_events()
    with rich_progress(f"{label} -> Kafka", console=console) as progress:
        await produce(deps.settings, events, progress=progress)

    async def folded() -> float:
        return _folded_events() - before

    await _wait_until(console, f"folding {label}", len(events), folded, timeout_s)


async def check_folded(
    engine: QueryEngine, tenant: str, ratings: Sequence[Rating], cutoff: int, rows: Sequence[Row]
) -> None:
    """The user model holds exactly the events before ``cutoff`` for these users."""
    expected = Counter(r.user_id for r in ratings if r.timestamp < cutoff)
    for row in rows:
        model = await engine.reader.user(tenant, row.user_id, recent_limit=1)
        if model.events != expected.get(row.user_id, 0):
            raise RuntimeError(
                f"user {row.user_id}: the user model folded {model.events} events, "
                f"expected {expected.get(row.user_id, 0)} (those before the cut-off)"
            )


# -- ranking ---------------------------------------------------------------------------


async def gather_candidates(
    engine: QueryEngine, phase: Phase, rows: Sequence[Row], tenant: str, console: Console,
    label: str,
) -> None:  # fmt: skip
    """Add ``rows`` to the phase with their candidates, gathered as of now."""
    with _bar(console, f"{label}: candidates per user", len(rows)) as update:
        for n, row in enumerate(rows, start=1):
            item_filter = ItemFilter(tenant=tenant, exclude_item_ids=row.history)
            phase.candidates.append(
                await engine.recommendation_candidates(
                    tenant, row.user_id, limit=LIST_LENGTH, item_filter=item_filter
                )
            )
            phase.rows.append(row)
            update(n)


async def engine_lists(
    engine: QueryEngine, phase: Phase, weights: Mapping[Signal, float], diversity: float
) -> list[list[str]]:
    lists = []
    for candidates in phase.candidates:
        _, results = await engine.rank(
            candidates, limit=LIST_LENGTH, weights=weights, diversity=diversity
        )
        lists.append([r.item_id for r in results])
    return lists


def random_lists(phase: Phase, catalog: Sequence[str], seed: int) -> list[list[str]]:
    lists = []
    for row in phase.rows:
        rng = np.random.default_rng([seed, zlib.crc32(f"{row.period}/{row.user_id}".encode())])
        picked: list[str] = []
        for position in rng.permutation(len(catalog)):
            if catalog[position] not in row.history:
                picked.append(catalog[position])
                if len(picked) == LIST_LENGTH:
                    break
        lists.append(picked)
    return lists


def count_popular_lists(
    phase: Phase, ratings: Sequence[Rating], positive: float = POSITIVE_RATING
) -> list[list[str]]:
    """Most positive ratings (>= ``positive``) before each row's cut-off; ties by id."""
    ranked_by_cutoff: dict[int, list[str]] = {}
    lists = []
    for row in phase.rows:
        if row.cutoff not in ranked_by_cutoff:
            counts = Counter(
                r.movie_id for r in ratings if r.timestamp < row.cutoff and r.rating >= positive
            )
            ranked_by_cutoff[row.cutoff] = sorted(
                counts, key=lambda i: (-counts[i], int(i) if i.isdigit() else 0, i)
            )
        ranked = ranked_by_cutoff[row.cutoff]
        picked: list[str] = []
        for item in ranked:
            if item not in row.history:
                picked.append(item)
                if len(picked) == LIST_LENGTH:
                    break
        lists.append(picked)
    return lists


def score(phase: Phase, key: str, lists: list[list[str]]) -> None:
    phase.lists[key] = lists
    phase.per_user[key] = [
        user_metrics(ranked, row.targets, row.history)
        for row, ranked in zip(phase.rows, lists, strict=True)
    ]


async def run_method(
    engine: QueryEngine, phase: Phase, method: Method, catalog: Sequence[str],
    ratings: Sequence[Rating], seed: int,
) -> None:  # fmt: skip
    if method.kind == "random":
        lists = random_lists(phase, catalog, seed)
    elif method.kind == "count":
        lists = count_popular_lists(phase, ratings)
    else:
        assert method.weights is not None
        lists = await engine_lists(engine, phase, method.weights, method.diversity)
    score(phase, method.key, lists)


async def search_weights(
    engine: QueryEngine, phase: Phase, grid: Sequence[Weights], console: Console
) -> list[dict[str, Any]]:
    """Every weighting of the grid on the validation rows, best first (mean NDCG@10,
    then HitRate@10, then the fewest signals, then the grid's order)."""
    rows: list[dict[str, Any]] = []
    with _bar(console, "validation: weight grid", len(grid)) as update:
        for n, weights in enumerate(grid):
            lists = await engine_lists(engine, phase, weights, 0.0)
            metrics = [
                user_metrics(ranked, row.targets, row.history)
                for row, ranked in zip(phase.rows, lists, strict=True)
            ]
            rows.append(
                {
                    "weights": weights,
                    "ndcg@10": float(np.mean([m["ndcg@10"] for m in metrics])),
                    "hit_rate@10": float(np.mean([m["hit_rate@10"] for m in metrics])),
                    "order": n,
                }
            )
            update(n + 1)
            await asyncio.sleep(0)

    def preference(row: dict[str, Any]) -> tuple[float, float, int, int]:
        weights: Weights = row["weights"]
        return (
            -round(float(row["ndcg@10"]), 9),
            -round(float(row["hit_rate@10"]), 9),
            sum(1 for w in weights.values() if w > 0),
            int(row["order"]),
        )

    rows.sort(key=preference)
    return rows


async def select_weights(
    engine: QueryEngine, phase: Phase, ranking: Sequence[Mapping[str, Any]],
    configured: Weights, config: EvaluationConfig,
) -> tuple[Weights, dict[str, Any]]:  # fmt: skip
    """The grid's best weighting, unless its lead over the configured defaults on the
    validation rows is within noise (the paired bootstrap interval of the per-user
    NDCG@10 difference reaches 0): then the defaults stay. The top of the grid is a
    near-tie of many weightings, which a small change anywhere reorders; a default
    changes only when validation clearly prefers another."""
    best: Weights = dict(ranking[0]["weights"])
    position = next((n for n, r in enumerate(ranking) if dict(r["weights"]) == configured), None)
    record: dict[str, Any] = {
        "rule": "the best, unless within noise of the configured defaults",
        "best": best,
        "configured_position": None if position is None else position + 1,
    }
    if best == configured:
        return best, {**record, "kept_configured": True, "difference": None}
    per_weights = {}
    for name, weights in (("best", best), ("configured", configured)):
        lists = await engine_lists(engine, phase, weights, 0.0)
        per_weights[name] = [
            user_metrics(ranked, row.targets, row.history)["ndcg@10"]
            for row, ranked in zip(phase.rows, lists, strict=True)
        ]
    indices = bootstrap_indices(len(phase.rows), resamples=config.resamples, seed=config.seed)
    difference = paired_difference(
        per_weights["best"], per_weights["configured"], indices, confidence=config.confidence
    )
    kept = difference.low <= 0
    record.update({"kept_configured": kept, "difference": difference.as_dict()})
    return (dict(configured) if kept else best), record


# -- the HTTP route, for a sample ------------------------------------------------------


def _get_json(url: str, headers: Mapping[str, str]) -> Any:
    request = urllib.request.Request(url, headers=dict(headers))
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def check_http_route(
    deps: Dependencies, phase: Phase, tenant: str, weights: Weights, users: int
) -> dict[str, Any]:
    """Ask ``GET /v1/users/{id}/recommendations`` (per-request weights, explicit
    exclusions) for a few users and compare with the in-process lists."""
    sample = phase.where(lambda row: 0 < len(row.history) <= 300)[:users]
    app = build_http_app(deps, ("query",), "query")
    port = free_port()
    identical = 0
    async with serve_http(app, "127.0.0.1", port):
        for n in sample:
            row = phase.rows[n]
            params: list[tuple[str, str]] = [("limit", str(LIST_LENGTH))]
            params += [(f"w_{s}", repr(w)) for s, w in weights.items()]
            params += [("exclude", i) for i in sorted(row.history)]
            url = (
                f"http://127.0.0.1:{port}/v1/users/{urllib.parse.quote(row.user_id)}"
                f"/recommendations?{urllib.parse.urlencode(params)}"
            )
            body = await asyncio.to_thread(_get_json, url, {"X-Attune-Tenant": tenant})
            identical += [i["item_id"] for i in body["items"]] == phase.lists["blend"][n]
    return {"users": len(sample), "identical": identical}


async def default_path_novelty(
    engine: QueryEngine, phase: Phase, tenant: str, weights: Weights
) -> dict[str, Any]:
    """The API's default request (``exclude_seen`` only, no explicit exclusions): the
    share of the top 10 the user had not rated before, for users with history."""
    shares = []
    for row in phase.rows:
        if not row.has_history:
            continue
        _, results = await engine.recommendations(
            tenant, row.user_id, limit=10, item_filter=ItemFilter(tenant=tenant), weights=weights
        )
        ranked = [r.item_id for r in results]
        shares.append(novelty_share(ranked, row.history))
    limit = engine.config.recent_items_limit
    return {
        "users": len(shares),
        "users_beyond_recent_limit": sum(1 for row in phase.rows if len(row.history) > limit),
        "recent_items_limit": limit,
        "novelty@10": float(np.mean(shares)) if shares else None,
    }


# -- summaries -------------------------------------------------------------------------


def summarise_rows(
    phase: Phase, rows: Sequence[int], catalog_size: int, config: EvaluationConfig,
    methods: Sequence[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    if not rows:
        return {"users": 0, "methods": {}}
    indices = bootstrap_indices(len(rows), resamples=config.resamples, seed=config.seed)
    out = {}
    for key in methods or list(phase.per_user):
        subset = [phase.per_user[key][n] for n in rows]
        lists = [phase.lists[key][n] for n in rows]
        summary = summarise(subset, lists, catalog_size, indices, confidence=config.confidence)
        out[key] = {name: e.as_dict() for name, e in summary.items()}
    return {"users": len(rows), "methods": out}


def phase_summary(phase: Phase, catalog_size: int, config: EvaluationConfig) -> dict[str, Any]:
    everyone = list(range(len(phase.rows)))
    summary: dict[str, Any] = {
        "users": len(phase.rows),
        "users_with_history": len(phase.where(lambda r: r.has_history)),
        "targets": sum(len(r.targets) for r in phase.rows),
        "all": summarise_rows(phase, everyone, catalog_size, config),
        "with_history": summarise_rows(
            phase, phase.where(lambda r: r.has_history), catalog_size, config
        ),
        "without_history": summarise_rows(
            phase, phase.where(lambda r: not r.has_history), catalog_size, config
        ),
    }
    if len(phase.periods) > 1:
        summary["periods"] = {
            period: {
                "users_with_history": len(
                    phase.where(lambda r, p=period: r.period == p and r.has_history)  # type: ignore[misc]
                ),
                **summarise_rows(
                    phase,
                    phase.where(lambda r, p=period: r.period == p),  # type: ignore[misc]
                    catalog_size,
                    config,
                ),
            }
            for period in phase.periods
        }
    return summary


def paired(phase: Phase, against: Sequence[str], config: EvaluationConfig) -> dict[str, Any]:
    indices = bootstrap_indices(len(phase.rows), resamples=config.resamples, seed=config.seed)
    out: dict[str, Any] = {}
    for key in against:
        out[key] = {
            metric: paired_difference(
                [m[metric] for m in phase.per_user["blend"]],
                [m[metric] for m in phase.per_user[key]],
                indices,
                confidence=config.confidence,
            ).as_dict()
            for metric in ("hit_rate@10", "ndcg@10")
        }
    return out


def verdict(summary: Mapping[str, Any], baseline_keys: Sequence[str]) -> dict[str, Any]:
    """Does the blend's mean lie above the upper bound of every baseline's interval
    (HitRate@10 and NDCG@10, all test users)?"""
    methods = summary["all"]["methods"]
    out: dict[str, Any] = {}
    for metric in ("hit_rate@10", "ndcg@10"):
        best = max(baseline_keys, key=lambda k: methods[k][metric]["mean"])
        blend = methods["blend"][metric]["mean"]
        out[metric] = {
            "blend": blend,
            "blend_low": methods["blend"][metric]["low"],
            "best_baseline": best,
            "best_baseline_mean": methods[best][metric]["mean"],
            "best_baseline_high": methods[best][metric]["high"],
            "beats_every_baseline": all(blend > methods[k][metric]["mean"] for k in baseline_keys),
            "outside_best_baseline_interval": blend > methods[best][metric]["high"],
        }
    return out


def required(summary: Mapping[str, Any], test_verdict: Mapping[str, Any]) -> dict[str, Any]:
    """What the blend would need on the users with history to clear the best baseline's
    upper bound over all users, given its mean on the users without history."""
    cold, warm = summary["without_history"], summary["with_history"]
    out: dict[str, Any] = {}
    for metric, v in test_verdict.items():
        best = v["best_baseline"]
        blend_cold = cold["methods"]["blend"][metric]["mean"] if cold["users"] else 0.0
        out[metric] = {
            "bound": v["best_baseline_high"],
            "best_baseline": best,
            "users": summary["users"],
            "with_history": warm["users"],
            "blend_without_history": blend_cold,
            "blend_with_history": warm["methods"]["blend"][metric]["mean"]
            if warm["users"]
            else None,
            "best_baseline_with_history": warm["methods"][best][metric]["mean"]
            if warm["users"]
            else None,
            "required_with_history": required_with_history(
                summary["users"], warm["users"], blend_cold, v["best_baseline_high"]
            ),
        }
    return out


# -- the whole run ---------------------------------------------------------------------


def _events_between(
    events: Sequence[Any], ratings: Sequence[Rating], start: int | None, end: int | None
) -> list[Any]:
    return [
        e
        for e, r in zip(events, ratings, strict=True)
        if (start is None or r.timestamp >= start) and (end is None or r.timestamp < end)
    ]


async def evaluate_movielens(
    config: EvaluationConfig, base: Settings, console: Console
) -> dict[str, Any]:
    started = time.monotonic()
    timings: dict[str, float] = {}
    mark = started

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name] = round(now - mark, 1)
        mark = now

    tenant = config.tenant
    items = movielens_items(config.folder, tenant=tenant)
    ratings = movielens_ratings(config.folder)
    events = list(movielens_events(config.folder, tenant=tenant))
    if len(events) != len(ratings):
        raise RuntimeError("ratings and events disagree")
    catalog = [i.item_id for i in items]
    split: TimeSplit = time_split(
        [r.timestamp for r in ratings],
        test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction,
        validation_windows=config.validation_windows,
    )
    windows = split.validation_windows()
    test_holdout = holdout(ratings, split.test_cutoff, None)
    described = split.describe()
    console.print(
        f"{len(items):,} items, {len(ratings):,} ratings; validation cut-offs "
        f"{', '.join(described['validation_cutoffs'])}; test cut-off {described['test_cutoff']}"
    )
    lap("parse")

    validation, test = Phase("validation"), Phase("test")
    with tempfile.TemporaryDirectory(prefix="attune-eval-") as scratch:
        data_dir = config.work_dir or Path(scratch)
        async with EmbeddedStack(data_dir) as stack:
            run_id = uuid.uuid4().hex[:8]
            settings = stack.settings(base).model_copy(
                update={
                    "default_tenant": tenant,
                    "kafka_group_prefix": f"eval-{run_id}",
                    "redis_namespace": f"eval-{run_id}",
                }
            )
            async with open_dependencies(settings, redis=True, model=True) as deps:
                include_consumers(deps, ("embedder", "usermodel"))
                await deps.broker.start()
                try:
                    index, redis, embedder = deps.vector_index, deps.redis, deps.embedder
                    assert index is not None
                    assert redis is not None
                    assert embedder is not None
                    engine = build_query_engine(settings, redis, index, embedder)
                    lap("start")
                    with rich_progress("content -> Kafka", console=console) as progress:
                        await produce(settings, items, progress=progress)

                    async def indexed() -> float:
                        assert index is not None
                        return float(await index.count(tenant))

                    # -- validation windows, each as of its cut-off ----------------------
                    folded_until: int | None = None
                    window_counts = []
                    for number, (start, end) in enumerate(windows, start=1):
                        label = f"window {number}"
                        batch = _events_between(events, ratings, folded_until, start)
                        await load_events(
                            deps, console, batch, f"events before {label}", config.wait_timeout_s
                        )
                        if number == 1:
                            await _wait_until(
                                console, "embedding items", len(items), indexed,
                                config.wait_timeout_s,
                            )  # fmt: skip
                            await index.optimize()
                            lap("load")
                        rows = rows_of(label, holdout(ratings, start, end))
                        await check_folded(engine, tenant, ratings, start, rows)
                        await gather_candidates(engine, validation, rows, tenant, console, label)
                        window_counts.append(
                            {"window": label, "start": day(start), "end": day(end),
                             "users": len(rows), "events": len(_events_between(
                                 events, ratings, start, end))}
                        )  # fmt: skip
                        folded_until = start
                    grid = weight_grid(config.grid)
                    ranking = await search_weights(engine, validation, grid, console)
                    configured: Weights = dict(engine.config.weights())
                    chosen, selection = await select_weights(
                        engine, validation, ranking, configured, config
                    )
                    console.print(f"chosen on validation: {weights_label(chosen)}")
                    methods = [
                        Method("blend", "Blend (weights chosen on validation)",
                               "All signals, weights from the validation grid.", weights=chosen),
                        *baselines(),
                    ]  # fmt: skip
                    if configured != chosen:
                        methods.append(
                            Method("blend_configured", "Blend (configured defaults)",
                                   "ATTUNE_RECOMMEND_WEIGHT_* as configured.", weights=configured)
                        )  # fmt: skip
                    if selection["best"] != chosen:
                        methods.append(
                            Method("blend_grid_best", "Blend (grid's best on validation)",
                                   "The grid's best weighting, not chosen: its lead over the "
                                   "defaults was within noise.", weights=selection["best"])
                        )  # fmt: skip
                    for method in methods:
                        await run_method(engine, validation, method, catalog, ratings, config.seed)
                    lap("validation")

                    # -- test, as of the test cut-off ------------------------------------
                    batch = _events_between(events, ratings, folded_until, split.test_cutoff)
                    await load_events(
                        deps, console, batch, "events before the test cut-off",
                        config.wait_timeout_s,
                    )  # fmt: skip
                    rows = rows_of("test", test_holdout)
                    await check_folded(engine, tenant, ratings, split.test_cutoff, rows)
                    await gather_candidates(engine, test, rows, tenant, console, "test")
                    ablations = [
                        Method(f"without_{s}", f"Blend without {s}",
                               f"The chosen weights with {s} set to 0.", weights=without(chosen, s))
                        for s in RECOMMEND_SIGNALS if chosen.get(s, 0.0) > 0
                    ]  # fmt: skip
                    diversified = [
                        Method(f"blend_mmr_{d}", f"Blend, MMR diversity {d}",
                               "The chosen weights re-ranked by maximal marginal relevance.",
                               weights=chosen, diversity=d)
                        for d in DIVERSITY_PROBES
                    ]  # fmt: skip
                    for method in [*methods, *ablations, *diversified]:
                        await run_method(engine, test, method, catalog, ratings, config.seed)
                    default_path = await default_path_novelty(engine, test, tenant, chosen)
                    http = await check_http_route(
                        deps, test, tenant, chosen, config.http_check_users
                    )
                    lap("test")
                finally:
                    await deps.broker.stop()

    baseline_keys = [m.key for m in baselines()]
    every_method = [*methods, *ablations, *diversified]
    validation_summary = phase_summary(validation, len(catalog), config)
    test_summary = phase_summary(test, len(catalog), config)
    test_verdict = verdict(test_summary, baseline_keys)
    lap("report")
    console.print("headroom: reference models on the test split (outside the system)")
    headroom = {
        "required": required(test_summary, test_verdict),
        "reference": reference_models(
            ratings, test_holdout, resamples=config.resamples, seed=config.seed,
            confidence=config.confidence,
        ),
        "split_sizes": split_sizes(ratings),
    }  # fmt: skip
    lap("headroom")
    return {
        "dataset": {
            "folder": str(config.folder),
            "items": len(items),
            "ratings": len(ratings),
            "users": len({r.user_id for r in ratings}),
        },
        "split": {
            **described,
            "test_fraction": config.test_fraction,
            "validation_fraction": config.validation_fraction,
            "validation_windows": window_counts,
            "training_events": sum(1 for r in ratings if r.timestamp < split.validation_cutoff),
            "test_events": sum(1 for r in ratings if r.timestamp >= split.test_cutoff),
            "events_before_test_cutoff": sum(1 for r in ratings if r.timestamp < split.test_cutoff),
            "positive_rating": POSITIVE_RATING,
        },
        "methods": {
            m.key: {
                "label": m.label,
                "description": m.description,
                "kind": m.kind,
                "weights": m.weights,
                "diversity": m.diversity,
            }
            for m in every_method
        },
        "settings": ranking_settings(settings),
        "baselines": baseline_keys,
        "ablations": [m.key for m in ablations],
        "diversified": [m.key for m in diversified],
        "chosen_weights": chosen,
        "selection": selection,
        "configured_weights": configured,
        "grid": {"values": list(config.grid), "size": len(grid), "top": ranking[:10]},
        "validation": validation_summary,
        "test": test_summary,
        "paired_test": paired(test, baseline_keys, config),
        "verdict": test_verdict,
        "headroom": headroom,
        "default_path": default_path,
        "http_check": http,
        "bootstrap": {
            "resamples": config.resamples,
            "confidence": config.confidence,
            "seed": config.seed,
        },
        "run": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": round(time.monotonic() - started, 1),
            "timings": timings,
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count() or 0} "
            f"CPUs, Python {platform.python_version()}",
        },
    }


RANKING_SETTINGS = (
    "recent_items_limit",
    "trending_half_life_days",
    "popularity_half_life_days",
    "cooccurrence_window",
    "rating_weight",
    "profile_items",
    "profile_half_life_days",
    "recommend_cooccurrence_sources",
    "recommend_cooccurrence_per_source",
    "recommend_popular_evidence",
)


def ranking_settings(settings: Settings) -> dict[str, Any]:
    """The configuration the lists depend on besides the weights (for the record)."""
    return {name: getattr(settings, name) for name in RANKING_SETTINGS}


def weights_label(weights: Mapping[Signal, float]) -> str:
    return ", ".join(f"{s} {w:g}" for s, w in weights.items())


__all__ = [
    "DEFAULT_GRID",
    "EvaluationConfig",
    "Method",
    "Phase",
    "Row",
    "baselines",
    "evaluate_movielens",
    "only",
    "verdict",
    "weight_grid",
    "without",
]
