"""How far could any ranking go on this split? Reference models outside the system.

The test criterion asks the blend's mean to clear the upper bound of the best
baseline's interval over *all* test users. Users first seen after the cut-off get a
non-personal list from every method, so the blend's lead can only come from the users
with history, diluted over everyone. This module measures the room there is:

- ``required_with_history``: the mean the blend would need on the users with history,
  given what it scores on the others, to clear the best baseline's upper bound.
- ``reference_models``: well-known offline recommenders, computed here in NumPy from the
  training ratings (not through the system), scored on the same users: item-based
  k-NN with cosine similarity (Sarwar et al., 2001) and EASE (Steck, 2019), each alone
  and with a time-decayed popularity prior, and decayed popularity alone. Every
  setting of a small grid is scored on the held-out users themselves and the best one
  is kept: a hindsight choice that favours the reference, so it is an optimistic
  bound, not a competitor.
- ``split_sizes``: how many users other test fractions would give, and how many of
  them have history (counting only; no scores, so nothing is tuned on them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.relevance.measures import bootstrap_indices, bootstrap_mean, user_metrics
from bench.relevance.split import POSITIVE_RATING, Holdout, holdout
from services.app.datasets import Rating

DECAY_HALF_LIVES_DAYS = (30.0, 90.0, 365.0, 730.0)
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
EASE_LAMBDAS = (100.0, 300.0, 1000.0)
MIN_ITEM_RATINGS = 2
"""Items with fewer training ratings are left out of the k-NN and EASE matrices (they
keep the item-item matrices small; such items are almost never recommended)."""
LIST_LENGTH = 20
METRICS = ("hit_rate@10", "ndcg@10")

Matrix = npt.NDArray[np.float64]


def required_with_history(
    users: int, with_history: int, mean_without: float, bound: float
) -> float | None:
    """The mean over the users with history that lifts the mean over all ``users`` to
    ``bound``, given ``mean_without`` over the others (None without such users)."""
    if with_history <= 0:
        return None
    return (bound * users - mean_without * (users - with_history)) / with_history


def decayed_popularity(
    ratings: Iterable[Rating], cutoff: int, half_life_days: float
) -> dict[str, float]:
    """Positive ratings before ``cutoff``, each halving every ``half_life_days`` back."""
    scores: dict[str, float] = {}
    for r in ratings:
        if r.timestamp < cutoff and r.rating >= POSITIVE_RATING:
            age_days = (cutoff - r.timestamp) / 86_400
            scores[r.movie_id] = scores.get(r.movie_id, 0.0) + 2 ** (-age_days / half_life_days)
    return scores


def _top(scores: Matrix, exclude: npt.NDArray[np.bool_], items: Sequence[str]) -> list[str]:
    masked = np.where(exclude, -np.inf, scores)
    order = np.argsort(-masked, kind="stable")[:LIST_LENGTH]
    return [items[i] for i in order if np.isfinite(masked[i])]


def _means(per_user: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([u[m] for u in per_user])) if per_user else math.nan for m in METRICS}


def reference_models(
    ratings: Sequence[Rating],
    held_out: Holdout,
    *,
    resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The best setting of each reference model on the held-out users (see the module)."""
    cutoff = held_out.cutoff
    users = held_out.users
    if not users:
        return {"items": 0, "min_item_ratings": MIN_ITEM_RATINGS, "models": {}}
    warm = [u for u in users if held_out.has_history(u)]
    train = [r for r in ratings if r.timestamp < cutoff]
    counts: dict[str, int] = {}
    for r in train:
        counts[r.movie_id] = counts.get(r.movie_id, 0) + 1
    items = sorted((i for i, c in counts.items() if c >= MIN_ITEM_RATINGS), key=_item_key)
    column = {item: n for n, item in enumerate(items)}
    row = {user: n for n, user in enumerate(warm)}
    matrix = np.zeros((len(warm), len(items)), dtype=np.float64)  # the users' histories
    for r in train:
        if r.user_id in row and r.movie_id in column:
            matrix[row[r.user_id], column[r.movie_id]] = 1.0
    everyone = np.zeros((len({r.user_id for r in train}), len(items)), dtype=np.float64)
    user_rows: dict[str, int] = {}
    for r in train:
        if r.movie_id in column:
            n = user_rows.setdefault(r.user_id, len(user_rows))
            everyone[n, column[r.movie_id]] = 1.0
    gram = everyone.T @ everyone
    seen = {u: np.array([i in held_out.history[u] for i in items]) for u in warm}

    def score_warm(scores: Matrix) -> list[dict[str, float]]:
        return [
            user_metrics(
                _top(scores[row[u]], seen[u], items), held_out.targets[u], held_out.history[u]
            )
            for u in warm
        ]

    priors = {}
    for half_life in DECAY_HALF_LIVES_DAYS:
        decayed = decayed_popularity(train, cutoff, half_life)
        vector = np.array([decayed.get(i, 0.0) for i in items], dtype=np.float64)
        priors[half_life] = vector / vector.max() if vector.max() > 0 else vector

    candidates: dict[str, list[tuple[str, list[dict[str, float]]]]] = {}
    # decayed popularity alone, on every user (it needs no history)
    for half_life, prior in priors.items():
        per_user = []
        for u in users:
            exclude = np.array([i in held_out.history.get(u, frozenset()) for i in items])
            per_user.append(
                user_metrics(
                    _top(prior, exclude, items),
                    held_out.targets[u],
                    held_out.history.get(u, frozenset()),
                )
            )
        candidates.setdefault("decayed_popularity", []).append(
            (f"half-life {half_life:g} days", per_user)
        )

    def with_priors(name: str, label: str, raw: Matrix) -> None:
        best_per_user = raw.max(axis=1, keepdims=True)
        normal = raw / np.where(best_per_user > 0, best_per_user, 1.0)
        for half_life, prior in priors.items():
            for weight in PRIOR_WEIGHTS:
                if weight == 0 and half_life != DECAY_HALF_LIVES_DAYS[0]:
                    continue  # the same scores whatever the half-life
                scores = normal + weight * prior[None, :]
                tag = (
                    label if weight == 0 else f"{label} + {weight:g} x popularity ({half_life:g} d)"
                )
                candidates.setdefault(name, []).append((tag, score_warm(scores)))

    if warm:
        norms = np.sqrt(np.diag(gram))
        norms[norms == 0] = 1.0
        cosine = gram / norms[:, None] / norms[None, :]
        np.fill_diagonal(cosine, 0.0)
        with_priors("item_knn", "cosine", matrix @ cosine)
        for lam in EASE_LAMBDAS:
            inverse = np.linalg.inv(gram + lam * np.eye(len(items)))
            weights = inverse / -np.diag(inverse)[None, :]
            np.fill_diagonal(weights, 0.0)
            with_priors("ease", f"lambda {lam:g}", matrix @ weights)

    labels = {
        "decayed_popularity": "Popularity, time-decayed (counted here, all users)",
        "item_knn": "Item k-NN, cosine (users with history)",
        "ease": "EASE (users with history)",
    }
    out: dict[str, Any] = {}
    for name, settings in candidates.items():
        setting, per_user = max(
            settings, key=lambda s: (round(_means(s[1])["ndcg@10"], 9), _means(s[1])["hit_rate@10"])
        )
        indices = bootstrap_indices(len(per_user), resamples=resamples, seed=seed)
        split_means: dict[str, Any] = {}
        if name == "decayed_popularity":
            split_means = {
                "with_history": _means(
                    [m for u, m in zip(users, per_user, strict=True) if held_out.has_history(u)]
                ),
                "without_history": _means(
                    [m for u, m in zip(users, per_user, strict=True) if not held_out.has_history(u)]
                ),
            }
        out[name] = {
            "label": labels[name],
            "setting": setting,
            "settings_tried": len(settings),
            "users": len(per_user),
            **{
                metric: bootstrap_mean(
                    [m[metric] for m in per_user], indices, confidence=confidence
                ).as_dict()
                for metric in METRICS
            },
            **split_means,
        }
    return {"items": len(items), "min_item_ratings": MIN_ITEM_RATINGS, "models": out}


def _item_key(item: str) -> tuple[bool, int, str]:
    return (not item.isdigit(), int(item) if item.isdigit() else 0, item)


def split_sizes(
    ratings: Sequence[Rating], fractions: Sequence[float] = (0.1, 0.15, 0.2, 0.25, 0.3)
) -> list[dict[str, Any]]:
    """Test users (and those with history) for other global cut-offs: the last
    ``fraction`` of the ratings by count, and of the time span."""
    ordered = sorted(r.timestamp for r in ratings)
    first, last = ordered[0], ordered[-1]
    out = []
    for by in ("ratings", "time"):
        for fraction in fractions:
            if by == "ratings":
                cutoff = ordered[min(len(ordered) - 1, round(len(ordered) * (1 - fraction)))]
            else:
                cutoff = int(first + (last - first) * (1 - fraction))
            period = holdout(ratings, cutoff, None)
            users = len(period.users)
            warm = sum(1 for u in period.users if period.has_history(u))
            out.append(
                {
                    "by": by,
                    "fraction": fraction,
                    "users": users,
                    "with_history": warm,
                    "with_history_over_root_users": warm / math.sqrt(users) if users else 0.0,
                }
            )
    return out


__all__ = ["decayed_popularity", "reference_models", "required_with_history", "split_sizes"]
