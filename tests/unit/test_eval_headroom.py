"""The headroom analysis: what the blend would need on users with history, reference
models computed outside the system, and other test fractions (counting only)."""

from __future__ import annotations

import pytest

from bench.relevance.headroom import (
    decayed_popularity,
    reference_models,
    required_with_history,
    split_sizes,
)
from bench.relevance.report import render_markdown
from bench.relevance.split import holdout
from bench.relevance.summary import required
from services.app.datasets import Rating
from tests.unit.test_eval_report import results

DAY = 86_400


def rating(user: str, movie: str, value: float, day: float) -> Rating:
    return Rating(user_id=user, movie_id=movie, rating=value, timestamp=int(day * DAY))


def ratings() -> list[Rating]:
    """Two tastes ("a" films and "b" films), users 1-6 before day 100; after it, user 1
    (who liked a1, a2) likes a3, and newcomer 9 likes the popular a1."""
    out = []
    for user in ("2", "3", "4"):
        out += [rating(user, m, 5.0, 10 + n) for n, m in enumerate(("a1", "a2", "a3"))]
    for user in ("5", "6"):
        out += [rating(user, m, 4.5, 20 + n) for n, m in enumerate(("b1", "b2", "b3"))]
    out += [rating("1", "a1", 5.0, 50), rating("1", "a2", 4.0, 51), rating("1", "b1", 2.0, 52)]
    out += [rating("1", "a3", 5.0, 120), rating("9", "a1", 4.0, 130), rating("9", "b2", 4.0, 131)]
    return sorted(out, key=lambda r: r.timestamp)


def test_the_mean_needed_on_users_with_history() -> None:
    # 10 users, 4 with history; the 6 others score 0.5; to reach 0.6 over all ten
    assert required_with_history(10, 4, 0.5, 0.6) == pytest.approx(0.75)
    assert required_with_history(10, 0, 0.5, 0.6) is None


def test_decayed_popularity_halves_every_half_life_and_counts_positives_only() -> None:
    scores = decayed_popularity(
        [rating("1", "x", 5.0, 0), rating("2", "x", 4.0, 10), rating("3", "y", 3.0, 10)],
        cutoff=20 * DAY,
        half_life_days=10.0,
    )
    assert scores == {"x": pytest.approx(0.25 + 0.5)}


def test_reference_models_find_what_the_user_with_history_went_on_to_like() -> None:
    data = ratings()
    held_out = holdout(data, 100 * DAY, None)
    assert held_out.users == ["1", "9"]
    out = reference_models(data, held_out, resamples=50, seed=1)
    models = out["models"]
    assert set(models) == {"decayed_popularity", "item_knn", "ease"}
    assert models["item_knn"]["users"] == 1  # only user 1 has history
    assert models["item_knn"]["hit_rate@10"]["mean"] == 1.0  # a3, liked with a1 and a2
    assert models["ease"]["ndcg@10"]["mean"] == 1.0
    popularity = models["decayed_popularity"]
    assert popularity["users"] == 2
    assert popularity["without_history"]["hit_rate@10"] == 1.0  # a1 is the most liked


def test_split_sizes_count_users_for_other_fractions() -> None:
    sizes = split_sizes(ratings(), fractions=(0.2,))
    assert [s["by"] for s in sizes] == ["ratings", "time"]
    by_ratings = sizes[0]
    assert by_ratings["users"] == 2
    assert by_ratings["with_history"] == 1
    assert by_ratings["with_history_over_root_users"] == pytest.approx(1 / 2**0.5)


def test_the_report_shows_the_headroom() -> None:
    document = results()
    data = ratings()
    document["headroom"] = {
        "required": required(document["test"], document["verdict"]),
        "reference": reference_models(data, holdout(data, 100 * DAY, None), resamples=50, seed=1),
        "split_sizes": split_sizes(data, fractions=(0.1, 0.2)),
    }
    document["settings"] = {"trending_half_life_days": 7.0}
    text = render_markdown(document)
    assert "### How far any ranking could go on this split" in text
    assert "| NDCG@10 | " in text
    assert "| 10% of the ratings (this run) |" in text
    assert "EASE (users with history): lambda" in text
