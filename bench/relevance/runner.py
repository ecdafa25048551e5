"""Drive the real system through an evaluation on a MovieLens-format folder.

1. Start the embedded stack (broker, Redis, Qdrant Edge) and, in this process, the
   embedder consumer with the real model and one user-model consumer per candidate
   popularity half-life (:mod:`.variants`: each folds the same events into its own
   Redis namespace).
2. Produce every movie to the content topic and the ratings before the first
   validation cut-off to the events topic; wait until every item is embedded and every
   event folded (as ``attune dev`` does); build the HNSW index.
3. Validation, window by window: with the user model as of the window's cut-off,
   gather each of the window's users' candidates once through the query service's
   :class:`QueryEngine`, for every variant; then produce and fold the window's ratings.
   With every window gathered, rank every validation user under every weighting of a
   small grid (per-request weight overrides, as the HTTP route passes them) for every
   variant, and keep the variant and weights with the best mean NDCG@10
   (:mod:`.selection`). The other variants stop.
4. Fold up to the test cut-off and score the blend (chosen weights), the baselines,
   the ablations and MMR on the test period's users.
5. Headroom (:mod:`.headroom`, outside the system): what the blend would need on the
   users with history to clear the best baseline's interval, what reference models
   reach there with hindsight, and how many users other test fractions would give.

Every list comes from ``QueryEngine.recommendation_candidates`` + ``QueryEngine.rank``,
exactly what ``GET /v1/users/{id}/recommendations`` runs (a sample is checked over HTTP
too), with the user model read as of the cut-off. What the user rated before the cut-off
is excluded explicitly (the user model keeps only each user's latest
``recent_items_limit`` items).
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.relevance.asking import check_http_route, default_path_novelty, gather_candidates
from bench.relevance.headroom import reference_models, split_sizes
from bench.relevance.loading import (
    check_folded,
    events_between,
    load_events,
    wait_for_all,
)
from bench.relevance.methods import ablations, baselines, blends, diversified, run_method
from bench.relevance.phases import (
    Laps,
    Phase,
    rows_of,
)
from bench.relevance.selection import (
    DEFAULT_GRID,
    Choice,
    Ranked,
    Weights,
    search_weights,
    select,
    weight_grid,
)
from bench.relevance.split import (
    POSITIVE_RATING,
    TimeSplit,
    day,
    holdout,
    time_split,
)
from bench.relevance.summary import paired, phase_summary, required, verdict
from bench.relevance.variants import FoldVariant, fold_variants
from schemas.query import Signal
from services.app.bootstrap import (
    Service,
    mount,
    open_dependencies,
    running_broker,
)
from services.app.datasets import (
    MOVIELENS_TENANT,
    movielens_events,
    movielens_items,
    movielens_ratings,
    produce,
    rich_progress,
)
from services.app.embedded import EmbeddedStack
from services.common.settings import Settings

log = logging.getLogger(__name__)

POPULARITY_HALF_LIVES = (0.0, 90.0, 180.0, 365.0, 730.0)
"""Candidate popularity half-lives (days; 0: no decay), chosen among on validation."""


@dataclass
class EvaluationConfig:
    folder: Path
    test_fraction: float = 0.1
    validation_fraction: float = 0.1
    validation_windows: int = 3
    grid: Sequence[float] = DEFAULT_GRID
    popularity_half_lives: Sequence[float] = POPULARITY_HALF_LIVES
    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 20240501
    work_dir: Path | None = None
    tenant: str = MOVIELENS_TENANT
    wait_timeout_s: float = 900.0
    http_check_users: int = 5


# -- the whole run ---------------------------------------------------------------------


async def choose_on_validation(
    variants: Sequence[FoldVariant], config: EvaluationConfig, console: Console
) -> tuple[Choice, dict[str, Any], Weights, FoldVariant]:
    """Search the weight grid on each fold variant's validation lists, pick the weights
    and the variant by the selection rule, and stop the variants not chosen. Returns
    the choice, the selection's record, the configured weights and the chosen variant."""
    grid = weight_grid(config.grid)
    ranked = []
    for v in variants:
        grid_ranking = await search_weights(v.engine, v.validation, grid, console, v.label)
        ranked.append(Ranked(v.popularity_half_life_days, v.engine, v.validation, grid_ranking))
    configured: Weights = dict(variants[0].engine.config.weights())
    choice, selection = await select(ranked, Choice(ranked[0], configured), config)
    fold = variants[ranked.index(choice.variant)]
    for variant in variants:
        if variant is not fold:
            await variant.stop()
    return choice, selection, configured, fold


async def evaluate_movielens(
    config: EvaluationConfig, base: Settings, console: Console
) -> dict[str, Any]:
    laps = Laps()
    lap = laps.lap

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

    test = Phase("test")
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
            half_lives = [settings.popularity_half_life_days, *config.popularity_half_lives]
            async with (
                open_dependencies(settings, (Service.embedder, Service.query)) as deps,
                fold_variants(deps, half_lives) as variants,
                running_broker(deps.broker, [mount(Service.embedder, deps)], settings),
            ):
                index = deps.vector_index
                assert index is not None
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
                    batch = events_between(events, ratings, folded_until, start)
                    await load_events(
                        deps, console, batch, f"events before {label}",
                        config.wait_timeout_s, consumers=len(variants),
                    )  # fmt: skip
                    if number == 1:
                        await wait_for_all(
                            "embedding items", len(items), indexed, config.wait_timeout_s,
                            console,
                        )  # fmt: skip
                        await index.optimize()
                        lap("load")
                    rows = rows_of(label, holdout(ratings, start, end))
                    for variant in variants:
                        variant.read_as_of(start)
                        await check_folded(variant.engine, tenant, ratings, start, rows)
                        await gather_candidates(
                            variant.engine, variant.validation, rows, tenant, console,
                            f"{label}, {variant.label}",
                        )  # fmt: skip
                    window_counts.append(
                        {"window": label, "start": day(start), "end": day(end),
                         "users": len(rows), "events": len(events_between(
                             events, ratings, start, end))}
                    )  # fmt: skip
                    folded_until = start
                choice, selection, configured, fold = await choose_on_validation(
                    variants, config, console
                )
                chosen, engine, validation = choice.weights, fold.engine, fold.validation
                console.print(f"chosen on validation: {weights_label(chosen)}; {fold.label}")
                methods = [*blends(chosen, configured, selection["best"]), *baselines()]
                for method in methods:
                    await run_method(engine, validation, method, catalog, ratings, config.seed)
                lap("validation")

                # -- test, as of the test cut-off ------------------------------------
                batch = events_between(events, ratings, folded_until, split.test_cutoff)
                await load_events(
                    deps, console, batch, "events before the test cut-off",
                    config.wait_timeout_s,
                )  # fmt: skip
                rows = rows_of("test", test_holdout)
                fold.read_as_of(split.test_cutoff)
                await check_folded(engine, tenant, ratings, split.test_cutoff, rows)
                await gather_candidates(engine, test, rows, tenant, console, "test")
                ablated, mmr = ablations(chosen), diversified(chosen)
                for method in [*methods, *ablated, *mmr]:
                    await run_method(engine, test, method, catalog, ratings, config.seed)
                default_path = await default_path_novelty(engine, test, tenant, chosen)
                http = await check_http_route(
                    deps, fold, test, tenant, chosen, config.http_check_users
                )
                lap("test")

    baseline_keys = [m.key for m in baselines()]
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
            for m in [*methods, *ablated, *mmr]
        },
        "settings": ranking_settings(fold.settings),
        "baselines": baseline_keys,
        "ablations": [m.key for m in ablated],
        "diversified": [m.key for m in mmr],
        "chosen_weights": chosen,
        "selection": selection,
        "configured_weights": configured,
        "grid": {
            "values": list(config.grid),
            "size": len(weight_grid(config.grid)),
            "top": choice.variant.ranking[:10],
        },
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
            "seconds": laps.seconds,
            "timings": laps.timings,
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
    "POPULARITY_HALF_LIVES",
    "EvaluationConfig",
    "evaluate_movielens",
    "ranking_settings",
    "weights_label",
]
