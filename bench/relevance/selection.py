"""Choosing the blend's configuration on validation: the weights (a grid of per-request
overrides) and, with them, the fold variant (the popularity half-life).

Every weighting of the grid is ranked for every validation user of every fold variant;
the best mean NDCG@10 is the best (ties: HitRate@10, then fewer signals, then the grid's
order, then the configured variant). What is chosen is the configuration with the fewest
changes to the configured defaults that validation does not clearly rank below the best
(the best's per-user NDCG@10 lead over it must stay above 0 over its paired bootstrap
interval to rule it out). The top of the grid is a near-tie of many weightings, which a
small change anywhere reorders; a default changes only on a clear lead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console

from bench.relevance.measures import (
    Resampling,
    bootstrap_indices,
    paired_difference,
    user_metrics,
)
from bench.relevance.phases import Phase, engine_lists, progress_bar
from schemas.query import Signal
from services.query.config import RECOMMEND_SIGNALS
from services.query.engine import QueryEngine

DEFAULT_GRID = (0.0, 0.25, 0.5, 1.0)
Weights = dict[Signal, float]


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


def preference(row: Mapping[str, Any]) -> tuple[float, float, int, int]:
    """Sort key of a grid row, best first."""
    weights: Mapping[str, float] = row["weights"]
    return (
        -round(float(row["ndcg@10"]), 9),
        -round(float(row["hit_rate@10"]), 9),
        sum(1 for w in weights.values() if w > 0),
        int(row["order"]),
    )


async def search_weights(
    engine: QueryEngine, phase: Phase, grid: Sequence[Weights], console: Console,
    label: str = "validation",
) -> list[dict[str, Any]]:  # fmt: skip
    """Every weighting of the grid on the phase's rows, best first (see :func:`preference`)."""
    rows: list[dict[str, Any]] = []
    with progress_bar(console, f"{label}: weight grid", len(grid)) as update:
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
    rows.sort(key=preference)
    return rows


@dataclass(frozen=True)
class Ranked:
    """One fold variant's validation: its engine, its phase (the same rows as every
    other variant's, in the same order) and its grid, best first."""

    popularity_half_life_days: float
    engine: QueryEngine
    phase: Phase
    ranking: Sequence[Mapping[str, Any]]

    def position(self, weights: Mapping[Signal, float]) -> int | None:
        """1-based place of ``weights`` in the grid, None if not in it."""
        found = (n for n, r in enumerate(self.ranking) if dict(r["weights"]) == dict(weights))
        place = next(found, None)
        return None if place is None else place + 1


@dataclass(frozen=True)
class Choice:
    variant: Ranked
    weights: Weights

    async def ndcg(self) -> list[float]:
        phase = self.variant.phase
        lists = await engine_lists(self.variant.engine, phase, self.weights, 0.0)
        return [
            user_metrics(ranked, row.targets, row.history)["ndcg@10"]
            for row, ranked in zip(phase.rows, lists, strict=True)
        ]


def variant_summary(variant: Ranked) -> dict[str, Any]:
    """What the JSON keeps of a variant's grid: its best and popularity alone."""
    alone = next(
        (r for r in variant.ranking if {s for s, w in r["weights"].items() if w} == {"popular"}),
        None,
    )
    best = variant.ranking[0]
    return {
        "popularity_half_life_days": variant.popularity_half_life_days,
        "best": {k: best[k] for k in ("weights", "ndcg@10", "hit_rate@10")},
        "popular_alone": None
        if alone is None
        else {k: alone[k] for k in ("ndcg@10", "hit_rate@10")},
    }


def _changes(option: Choice, configured: Choice) -> list[str]:
    changed = []
    if option.variant is not configured.variant:
        changed.append("popularity half-life")
    if option.weights != configured.weights:
        changed.append("weights")
    return changed


async def select(
    variants: Sequence[Ranked], configured: Choice, config: Resampling
) -> tuple[Choice, dict[str, Any]]:
    """The configuration that changes the fewest defaults among those validation does not
    clearly rank below its best (the best's per-user NDCG@10 lead over it has a paired
    bootstrap interval reaching 0). In order: the configured defaults; the configured
    weights with the variant that suits them best (the half-life changes); the configured
    variant's best weights (the weights change); the best of every variant (both)."""
    order = {id(v): n for n, v in enumerate(variants)}

    def rank_of(v: Ranked) -> tuple[Any, ...]:
        return (preference(v.ranking[0]), v is not configured.variant, order[id(v)])

    best_variant = min(variants, key=rank_of)
    best = Choice(best_variant, dict(best_variant.ranking[0]["weights"]))
    scores: dict[tuple[int, str], list[float]] = {}

    async def ndcg(choice: Choice) -> list[float]:
        key = (id(choice.variant), repr(sorted(choice.weights.items())))
        if key not in scores:
            scores[key] = await choice.ndcg()
        return scores[key]

    by_weights = [Choice(v, dict(configured.weights)) for v in variants]
    means = [float(np.mean(await ndcg(c))) for c in by_weights]
    half_life_only = max(
        zip(by_weights, means, strict=True),
        key=lambda pair: (round(pair[1], 9), pair[0].variant is configured.variant),
    )[0]
    weights_only = Choice(configured.variant, dict(configured.variant.ranking[0]["weights"]))
    options: list[Choice] = []
    for option in (configured, half_life_only, weights_only, best):
        if not any(o.variant is option.variant and o.weights == option.weights for o in options):
            options.append(option)
    options.sort(key=lambda o: len(_changes(o, configured)))

    best_scores = await ndcg(best)
    indices = bootstrap_indices(len(best_scores), resamples=config.resamples, seed=config.seed)
    considered: list[dict[str, Any]] = []
    chosen = best
    for option in options:
        option_scores = await ndcg(option)
        is_best = option.variant is best.variant and option.weights == best.weights
        difference = (
            None
            if is_best
            else paired_difference(
                best_scores, option_scores, indices, confidence=config.confidence
            )
        )
        considered.append(
            {
                "popularity_half_life_days": option.variant.popularity_half_life_days,
                "weights": option.weights,
                "changes": _changes(option, configured),
                "ndcg@10": float(np.mean(option_scores)),
                "best_minus_this": None if difference is None else difference.as_dict(),
            }
        )
        if difference is None or difference.low <= 0:
            chosen = option
            break
    record: dict[str, Any] = {
        "rule": "the fewest changes to the defaults, unless validation clearly ranks it "
        "below the best",
        "best": best.weights,
        "best_popularity_half_life_days": best_variant.popularity_half_life_days,
        "configured_position": configured.variant.position(configured.weights),
        "configured_popularity_half_life_days": configured.variant.popularity_half_life_days,
        "variants": [
            {**variant_summary(v), "configured_weights_ndcg@10": mean}
            for v, mean in zip(variants, means, strict=True)
        ],
        "considered": considered,
        "changes": _changes(chosen, configured),
        "kept_configured": chosen is configured,
        "difference": considered[0]["best_minus_this"],
    }
    return chosen, record


__all__ = [
    "DEFAULT_GRID",
    "Choice",
    "Ranked",
    "Weights",
    "preference",
    "search_weights",
    "select",
    "variant_summary",
    "weight_grid",
]
