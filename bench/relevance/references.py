"""The batch references of the per-user protocol (:mod:`.batch`): fitted on exactly the
events the system folded, their parameters chosen on validation (the best mean NDCG@10;
ties: the first in the grid), scored on the same users and the same catalog.

For validation each model is fitted on the training events; for test, the chosen
setting is fitted again on training and validation events, as the system folded both
before test. k-NN, EASE and iALS rank the items with at least
:data:`MIN_ITEM_RATINGS` users in what they are fitted on (the rest cannot be
recommended by them; it keeps EASE's dense inverse small); popularity ranks the whole
catalog. None recommends what the user has in the fitted events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from bench.relevance.batch import (
    Floats,
    binary_matrix,
    cosine_neighbours,
    ease_scores,
    ease_weights,
    ials,
    item_knn_scores,
    popularity,
    top_items,
)
from bench.relevance.measures import user_metrics
from bench.relevance.phases import LIST_LENGTH, Row
from bench.relevance.split import Role
from services.app.datasets import Rating

MIN_ITEM_RATINGS = 2
NEIGHBOURS = (10, 25, 50, 100, 200, 400)
EASE_REGULARIZATION = (50.0, 100.0, 250.0, 500.0, 1000.0)
IALS_GRID: tuple[dict[str, float], ...] = tuple(
    {"factors": f, "regularization": r, "alpha": a}
    for f in (32, 64)
    for r in (1.0, 10.0)
    for a in (5.0, 20.0)
)
IALS_ITERATIONS = 8
REFERENCES = {
    "most_popular": (
        "Most popular (batch)",
        "Users per item in the fitted events, the whole catalog.",
    ),
    "item_knn": (
        "Item k-NN (batch)",
        "Cosine similarity between items, each keeping its k nearest (k chosen on validation).",
    ),
    "ease": ("EASE (batch)", "Closed-form linear item-item model (lambda chosen on validation)."),
    "ials": (
        "iALS (batch)",
        "Implicit alternating least squares (factors, regularization and confidence "
        f"alpha chosen on validation; {IALS_ITERATIONS} iterations).",
    ),
}
Scorer = Callable[[sp.csr_matrix, np.ndarray[Any, np.dtype[np.intp]]], Floats]
"""Fitted model: (the fitted matrix restricted to its items, user rows) -> scores."""


@dataclass
class Interactions:
    """Users and catalog as matrix rows and columns."""

    users: list[str]
    catalog: list[str]
    user_row: dict[str, int] = field(init=False)
    item_column: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.user_row = {u: n for n, u in enumerate(self.users)}
        self.item_column = {i: n for n, i in enumerate(self.catalog)}

    def matrix(
        self, ratings: Sequence[Rating], roles: Sequence[Role], keep: Collection[Role]
    ) -> sp.csr_matrix:
        """Users x catalog, 1.0 where a rating of a role in ``keep`` exists."""
        pairs = [
            (self.user_row[r.user_id], self.item_column[r.movie_id])
            for r, role in zip(ratings, roles, strict=True)
            if role in keep and r.movie_id in self.item_column
        ]
        rows = np.array([p[0] for p in pairs], dtype=np.intp)
        columns = np.array([p[1] for p in pairs], dtype=np.intp)
        return binary_matrix(rows, columns, (len(self.users), len(self.catalog)))


def _fit(kind: str, setting: Mapping[str, float], matrix: sp.csr_matrix, seed: int) -> Scorer:
    if kind == "item_knn":
        neighbourhoods = cosine_neighbours(matrix, int(setting["neighbours"]))
        return lambda m, rows: item_knn_scores(m[rows], neighbourhoods)
    if kind == "ease":
        weights = ease_weights(matrix, setting["lambda"])
        return lambda m, rows: ease_scores(m[rows], weights)
    if kind == "ials":
        model = ials(
            matrix, factors=int(setting["factors"]), regularization=setting["regularization"],
            alpha=setting["alpha"], iterations=IALS_ITERATIONS, seed=seed,
        )  # fmt: skip
        return lambda m, rows: model.scores(rows)
    raise ValueError(f"unknown reference {kind!r}")


def grid(kind: str) -> list[dict[str, float]]:
    if kind == "item_knn":
        return [{"neighbours": float(k)} for k in NEIGHBOURS]
    if kind == "ease":
        return [{"lambda": lam} for lam in EASE_REGULARIZATION]
    if kind == "ials":
        return [dict(s) for s in IALS_GRID]
    return [{}]


def reference_lists(
    kind: str, setting: Mapping[str, float], fitted: sp.csr_matrix, rows: Sequence[Row],
    space: Interactions, seed: int,
) -> list[list[str]]:  # fmt: skip
    """Each row's list from the model fitted on ``fitted`` (users x catalog)."""
    user_rows = np.array([space.user_row[row.user_id] for row in rows], dtype=np.intp)
    if kind == "most_popular":
        counts = popularity(fitted)
        scores = np.broadcast_to(counts, (len(rows), len(counts)))
        ranked = top_items(scores, fitted[user_rows], LIST_LENGTH)
        return [[space.catalog[c] for c in row] for row in ranked]
    known = np.flatnonzero(popularity(fitted) >= MIN_ITEM_RATINGS)
    if len(known) == 0:
        return [[] for _ in rows]
    restricted = fitted[:, known].tocsr()
    scorer = _fit(kind, setting, restricted, seed)
    out: list[list[str]] = []
    for start in range(0, len(user_rows), 256):
        chunk = user_rows[start : start + 256]
        ranked = top_items(scorer(restricted, chunk), restricted[chunk], LIST_LENGTH)
        out += [[space.catalog[known[c]] for c in row] for row in ranked]
    return out


def mean_ndcg(rows: Sequence[Row], lists: Sequence[Sequence[str]]) -> float:
    return float(
        np.mean(
            [
                user_metrics(ranked, row.targets, row.history)["ndcg@10"]
                for row, ranked in zip(rows, lists, strict=True)
            ]
        )
    )


@dataclass
class Reference:
    key: str
    setting: dict[str, float]
    validation: list[list[str]]
    tried: list[dict[str, Any]]
    seconds: float = 0.0


def choose(
    kind: str, fitted: sp.csr_matrix, rows: Sequence[Row], space: Interactions, seed: int
) -> Reference:
    """Every setting of the grid fitted on ``fitted`` and scored on the validation
    ``rows``; the best mean NDCG@10 is kept (ties: the first)."""
    started = time.monotonic()
    best: tuple[float, dict[str, float], list[list[str]]] | None = None
    tried = []
    for setting in grid(kind):
        lists = reference_lists(kind, setting, fitted, rows, space, seed)
        ndcg = mean_ndcg(rows, lists)
        tried.append({"setting": setting, "ndcg@10": ndcg})
        if best is None or round(ndcg, 9) > round(best[0], 9):
            best = (ndcg, setting, lists)
    assert best is not None
    return Reference(kind, best[1], best[2], tried, round(time.monotonic() - started, 1))


__all__ = [
    "EASE_REGULARIZATION",
    "IALS_GRID",
    "IALS_ITERATIONS",
    "MIN_ITEM_RATINGS",
    "NEIGHBOURS",
    "REFERENCES",
    "Interactions",
    "Reference",
    "choose",
    "grid",
    "mean_ndcg",
    "reference_lists",
]
