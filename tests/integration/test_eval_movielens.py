"""`attune eval movielens` end to end on a tiny MovieLens-format folder: the real
embedded stack, model, consumers and query engine, the report and the JSON written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.relevance.cli import eval_app

pytestmark = pytest.mark.integration

GENRES = ["Sci-Fi|Adventure", "Comedy|Romance", "Horror|Thriller", "Animation|Children"]


def write_movielens(folder: Path) -> None:
    """16 films in four genres; 12 users who rate inside one genre (>= 4) and a few
    others (< 4), spread over time so that every period has raters, old and new."""
    rng = random.Random(5)
    folder.mkdir()
    movies = ["movieId,title,genres"]
    for n in range(16):
        movies.append(f'{n + 1},"Film {n + 1} ({1990 + n})",{GENRES[n % 4]}')
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")
    ratings = ["userId,movieId,rating,timestamp"]
    for user in range(1, 13):
        genre = user % 4
        start = 1_000_000 + user * 50_000
        for k in range(14):
            movie = rng.randrange(16)
            liked = movie % 4 == genre
            rating = rng.choice([4.0, 4.5, 5.0]) if liked else rng.choice([1.5, 2.5, 3.0])
            ratings.append(f"{user},{movie + 1},{rating},{start + k * 30_000}")
    (folder / "ratings.csv").write_text("\n".join(ratings) + "\n")
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,space,1000000\n")


def test_the_evaluation_runs_through_the_real_system(tmp_path: Path) -> None:
    folder = tmp_path / "ml-tiny"
    write_movielens(folder)
    report, data = tmp_path / "docs" / "relevance.md", tmp_path / "docs" / "relevance.json"
    result = CliRunner().invoke(
        eval_app,
        ["movielens", str(folder), "--report", str(report), "--json", str(data),
         "--resamples", "100", "--validation-windows", "2", "--test-fraction", "0.2",
         "--validation-fraction", "0.2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    results = json.loads(data.read_text())
    assert results["dataset"]["items"] == 16
    assert results["test"]["users"] > 0
    assert results["validation"]["users"] > 0
    assert set(results["test"]["all"]["methods"]) >= {
        "blend", "popular", "popular_count", "trending", "cooccurrence", "content", "random",
    }  # fmt: skip
    assert results["http_check"]["identical"] == results["http_check"]["users"]
    blend = results["test"]["all"]["methods"]["blend"]
    assert blend["novelty@10"]["mean"] == 1.0  # nothing rated before the cut-off comes back
    assert 0.0 <= blend["ndcg@10"]["low"] <= blend["ndcg@10"]["mean"] <= 1.0
    text = report.read_text()
    assert text.startswith("# Relevance of recommendations")
    assert "## Per-user temporal holdout" in text
    assert "## As it would run in production: one global timeline" in text

    per_user = results["per_user"]
    assert per_user["split"]["evaluated_users"] == 12  # every user has 14 ratings
    assert per_user["split"]["ratings"] == {"train": 96, "validation": 36, "test": 36}
    # users whose test ratings are all of films they rated before have nothing to find
    assert 8 <= per_user["test_any_rating"]["users"] <= 12
    assert (
        per_user["test"]["users"] + per_user["split"]["test_users_without_a_positive"]
        == (per_user["test_any_rating"]["users"])
    )
    methods = per_user["test"]["all"]["methods"]
    assert set(methods) >= {
        "blend", "popular", "trending", "cooccurrence", "content", "random",
        "most_popular", "item_knn", "ease", "ials",
    }  # fmt: skip
    for key, summary in methods.items():  # nothing the user has in the folded data
        assert summary["novelty@10"]["mean"] == 1.0, key
    blend, knn = methods["blend"]["ndcg@10"]["mean"], methods["item_knn"]["ndcg@10"]["mean"]
    assert per_user["criteria"]["checks"][1]["met"] == (blend >= knn)
    assert per_user["references"]["ease"]["setting"]["lambda"] > 0
