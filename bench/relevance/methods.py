"""The methods scored on a phase: the blend, its baselines, ablations and MMR probes.

A :class:`Method` is either a weighting of the query engine's signals (the blend, each
signal alone, the blend without one) or a list computed here without the system
(random, count of positive ratings).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.relevance.measures import user_metrics
from bench.relevance.phases import LIST_LENGTH, Phase, engine_lists
from bench.relevance.selection import Weights
from bench.relevance.split import POSITIVE_RATING
from schemas.query import Signal
from services.app.datasets import Rating
from services.query.config import RECOMMEND_SIGNALS
from services.query.engine import QueryEngine

DIVERSITY_PROBES = (0.2, 0.5)
"""MMR diversity settings scored on the test period, with the chosen weights."""


def only(signal: Signal) -> Weights:
    """Weights that keep one signal of the blend."""
    return {s: (1.0 if s == signal else 0.0) for s in RECOMMEND_SIGNALS}


def without(weights: Mapping[Signal, float], signal: Signal) -> Weights:
    return {s: (0.0 if s == signal else w) for s, w in weights.items()}


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
            "The user model's popularity ZSET: summed positive "
            "strength (rating above the user's running mean), decayed with the popularity "
            "half-life chosen on validation (or all time).",
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


def blends(chosen: Weights, configured: Weights, grid_best: Weights) -> list[Method]:
    """The chosen blend, and the configured defaults and the grid's best where they
    differ from it."""
    methods = [
        Method("blend", "Blend (weights chosen on validation)",
               "All signals, weights from the validation grid.", weights=chosen),
    ]  # fmt: skip
    if configured != chosen:
        methods.append(
            Method("blend_configured", "Blend (configured defaults)",
                   "ATTUNE_RECOMMEND_WEIGHT_* as configured.", weights=configured)
        )  # fmt: skip
    if grid_best != chosen:
        methods.append(
            Method("blend_grid_best", "Blend (grid's best on validation)",
                   "The grid's best weighting, not chosen: its lead over the "
                   "defaults was within noise.", weights=grid_best)
        )  # fmt: skip
    return methods


def ablations(chosen: Weights) -> list[Method]:
    """The chosen blend without each signal it uses."""
    return [
        Method(f"without_{s}", f"Blend without {s}",
               f"The chosen weights with {s} set to 0.", weights=without(chosen, s))
        for s in RECOMMEND_SIGNALS if chosen.get(s, 0.0) > 0
    ]  # fmt: skip


def diversified(chosen: Weights) -> list[Method]:
    """The chosen blend re-ranked by MMR at each of :data:`DIVERSITY_PROBES`."""
    return [
        Method(f"blend_mmr_{d}", f"Blend, MMR diversity {d}",
               "The chosen weights re-ranked by maximal marginal relevance.",
               weights=chosen, diversity=d)
        for d in DIVERSITY_PROBES
    ]  # fmt: skip


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


__all__ = [
    "DIVERSITY_PROBES",
    "Method",
    "ablations",
    "baselines",
    "blends",
    "count_popular_lists",
    "diversified",
    "only",
    "random_lists",
    "run_method",
    "score",
    "without",
]
