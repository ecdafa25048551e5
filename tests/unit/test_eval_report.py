"""The Markdown report and the JSON, rendered from a small results document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.relevance.methods import baselines, score
from bench.relevance.phases import Phase
from bench.relevance.report import (
    cell,
    headline,
    render_markdown,
    weights_text,
    write_outputs,
)
from bench.relevance.runner import EvaluationConfig
from bench.relevance.summary import paired, phase_summary, verdict
from tests.unit.test_eval_runner import row, scored_phase

CHOSEN = {"content": 1.0, "cooccurrence": 0.5, "trending": 0.25, "popular": 1.0, "tags": 0.0}


def results() -> dict[str, Any]:
    config = EvaluationConfig(folder=Path("ml"), resamples=100, seed=1)
    test = scored_phase()
    keys = [m.key for m in baselines()]
    for key in keys:
        if key not in test.per_user:
            score(test, key, [["x"]] * len(test.rows))
    score(test, "without_popular", [["t0"], ["x"], ["x"], ["x"]])
    score(test, "blend_mmr_0.5", [["t0"], ["t1"], ["x"], ["x"]])
    validation = Phase("validation")
    validation.rows = [row("1", 5, set(), {"a"}, "window 1"), row("2", 8, {"a"}, {"b"}, "window 2")]
    for key in ["blend", *keys]:
        score(validation, key, [["a"], ["x"]])
    test_summary = phase_summary(test, 10, config)
    labels = {m.key: m for m in baselines()}
    return {
        "dataset": {"folder": "/data/ml", "items": 10, "ratings": 40, "users": 6},
        "split": {
            "first_event": "2000-01-01 00:00:00 UTC",
            "validation_cutoffs": ["2001-01-01 00:00:00 UTC", "2002-01-01 00:00:00 UTC"],
            "test_cutoff": "2003-01-01 00:00:00 UTC",
            "last_event": "2004-01-01 00:00:00 UTC",
            "test_fraction": 0.1,
            "validation_fraction": 0.1,
            "validation_windows": [
                {
                    "window": "window 1",
                    "start": "2001-01-01 00:00:00 UTC",
                    "end": "2002-01-01 00:00:00 UTC",
                    "users": 1,
                    "events": 4,
                },
                {
                    "window": "window 2",
                    "start": "2002-01-01 00:00:00 UTC",
                    "end": "2003-01-01 00:00:00 UTC",
                    "users": 1,
                    "events": 4,
                },
            ],
            "training_events": 28,
            "test_events": 4,
            "events_before_test_cutoff": 36,
            "positive_rating": 4.0,
        },
        "methods": {
            "blend": {
                "label": "Blend",
                "description": "d",
                "kind": "engine",
                "weights": CHOSEN,
                "diversity": 0.0,
            },
            **{
                k: {
                    "label": m.label,
                    "description": m.description,
                    "kind": m.kind,
                    "weights": m.weights,
                    "diversity": 0.0,
                }
                for k, m in labels.items()
            },
            "without_popular": {
                "label": "Blend without popular",
                "description": "d",
                "kind": "engine",
                "weights": {**CHOSEN, "popular": 0.0},
                "diversity": 0.0,
            },
            "blend_mmr_0.5": {
                "label": "Blend, MMR diversity 0.5",
                "description": "d",
                "kind": "engine",
                "weights": CHOSEN,
                "diversity": 0.5,
            },
        },
        "baselines": keys,
        "ablations": ["without_popular"],
        "diversified": ["blend_mmr_0.5"],
        "chosen_weights": CHOSEN,
        "configured_weights": CHOSEN,
        "grid": {
            "values": [0.0, 0.5, 1.0],
            "size": 211,
            "top": [{"weights": CHOSEN, "ndcg@10": 0.5, "hit_rate@10": 0.5, "order": 3}],
        },
        "validation": phase_summary(validation, 10, config),
        "test": test_summary,
        "paired_test": paired(test, keys, config),
        "verdict": verdict(test_summary, keys),
        "default_path": {
            "users": 2,
            "users_beyond_recent_limit": 1,
            "recent_items_limit": 200,
            "novelty@10": 0.8,
        },
        "http_check": {"users": 2, "identical": 2},
        "bootstrap": {"resamples": 100, "confidence": 0.95, "seed": 1},
        "run": {
            "date": "2024-05-01 12:00 UTC",
            "seconds": 200.0,
            "timings": {"load": 90.0, "test": 5.0},
            "machine": "Linux x86_64, 2 CPUs",
            "command": "attune eval movielens ../shared/data/ml-latest-small",
        },
    }


def test_cells_and_weights_read_well() -> None:
    assert cell({"mean": 0.5, "low": 0.25, "high": 0.75}) == "0.500 [0.250, 0.750]"
    assert cell({"mean": 0.5, "low": 0.25, "high": 0.75}, interval=False) == "0.500"
    assert cell({"mean": float("nan"), "low": 0, "high": 0}, interval=False) == "-"
    assert weights_text({"tags": 0.5, "content": 1.0}) == "content 1, tags 0.5"


def test_the_report_has_the_tables_the_method_and_the_run() -> None:
    text = render_markdown(results())
    assert text.startswith("# Relevance of recommendations, measured on MovieLens")
    assert "attune eval movielens ../shared/data/ml-latest-small" in text
    assert "2024-05-01 12:00 UTC" in text
    blend_row = next(line for line in text.splitlines() if line.startswith("| **Blend**"))
    assert "| 0.750 [" in blend_row  # HitRate@10 with its interval
    assert "| Most popular (count of ratings >= 4) |" in text
    assert "| Random |" in text
    assert "## Ablation" in text
    assert (
        "| minus popular | content 1, cooccurrence 0.5, trending 0.25, popular 0, tags 0 |" in text
    )
    assert "## Diversity (MMR)" in text
    assert "Chosen: **content 1, cooccurrence 0.5, trending 0.25, popular 1, tags 0**" in text
    assert "(the same)" in text
    assert "| window 1: 2001-01-01 to 2002-01-01 | 1 (0) |" in text
    assert "HitRate@10: the blend beats every baseline" in text
    assert "Over HTTP, 2 of 2 sampled test users got the identical list." in text
    assert "| total | 200 |" in text
    assert "### Why" not in text  # the blend is outside the intervals here


def test_the_report_explains_a_lead_inside_the_interval() -> None:
    document = results()
    document["verdict"]["ndcg@10"]["outside_best_baseline_interval"] = False
    text = render_markdown(document)
    assert "### Why the blend's lead stays inside the best baseline's interval" in text
    assert "2 of the 4 test users (50%) rated nothing before the cut-off" in text


def test_headline_and_outputs(tmp_path: Path) -> None:
    document = results()
    assert "best baseline popular" in headline(document)
    markdown, data = tmp_path / "docs" / "relevance.md", tmp_path / "docs" / "relevance.json"
    write_outputs(document, markdown, data)
    assert markdown.read_text() == render_markdown(document)
    assert json.loads(data.read_text()) == json.loads(json.dumps(document))


def test_the_report_shows_the_half_lives_and_the_configurations_tried() -> None:
    document = results()
    best = {**CHOSEN, "content": 0.25}
    document["settings"] = {"trending_half_life_days": 7.0, "popularity_half_life_days": 365.0}
    document["selection"] = {
        "best": best,
        "best_popularity_half_life_days": 365.0,
        "configured_position": 4,
        "configured_popularity_half_life_days": 0.0,
        "variants": [
            {
                "popularity_half_life_days": days,
                "best": {"weights": best, "ndcg@10": ndcg, "hit_rate@10": 0.7},
                "popular_alone": {"ndcg@10": ndcg - 0.01, "hit_rate@10": 0.69},
                "configured_weights_ndcg@10": ndcg - 0.02,
            }
            for days, ndcg in ((0.0, 0.30), (365.0, 0.33))
        ],
        "considered": [
            {
                "popularity_half_life_days": 0.0,
                "weights": CHOSEN,
                "changes": [],
                "ndcg@10": 0.28,
                "best_minus_this": {"mean": 0.05, "low": 0.02, "high": 0.08},
            },
            {
                "popularity_half_life_days": 365.0,
                "weights": CHOSEN,
                "changes": ["popularity half-life"],
                "ndcg@10": 0.31,
                "best_minus_this": {"mean": 0.02, "low": -0.01, "high": 0.04},
            },
        ],
        "changes": ["popularity half-life"],
        "kept_configured": False,
        "difference": {"mean": 0.05, "low": 0.02, "high": 0.08},
    }
    text = render_markdown(document)
    assert "## Popularity half-life, chosen on validation with the weights" in text
    assert "| **365 days** | content 0.25, cooccurrence 0.5" in text
    assert "| no decay | content 0.25" in text
    assert "| popularity half-life | 0.310 | 0.020 [-0.010, 0.040] |" in text
    assert "| none | 0.280 | 0.050 [0.020, 0.080] |" in text
    assert "Chosen: a change of popularity half-life; the configured defaults" in text
