"""The per-user protocol's pure parts: the criteria, re-scoring on positives only, the
reading moment, and the report's section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.relevance.methods import score
from bench.relevance.peruser import folded_counts, latest, restrict, system_baselines
from bench.relevance.phases import Phase, rows_of
from bench.relevance.report import headline, render_markdown
from bench.relevance.runner import EvaluationConfig
from bench.relevance.split import TEST, TRAIN, VALIDATION, per_user_holdout
from bench.relevance.summary import criteria, paired, phase_summary
from services.app.datasets import Rating
from tests.unit.test_eval_report import results

NDCG = {"blend": 0.30, "popular": 0.25, "trending": 0.10, "most_popular": 0.26,
        "random": 0.0, "item_knn": 0.28, "ease": 0.32, "ials": 0.20}  # fmt: skip


def summary(ndcg: dict[str, float]) -> dict[str, Any]:
    return {"all": {"methods": {k: {"ndcg@10": {"mean": v}} for k, v in ndcg.items()}}}


def difference(low: float) -> dict[str, Any]:
    return {"most_popular": {"ndcg@10": {"mean": 0.04, "low": low, "high": 0.07}}}


def test_criteria_compare_with_the_best_non_personal_baseline_and_the_references() -> None:
    found = criteria(summary(NDCG), difference(0.01))
    assert found["best_non_personal"] == "most_popular"
    assert round(found["ratios"]["most_popular"], 3) == round(0.30 / 0.26, 3)
    assert round(found["ratios"]["ials"], 3) == 1.5
    assert [c["met"] for c in found["checks"]] == [True, True, True]  # 1.15x, 1.07x, 0.94x


def test_criteria_fail_on_an_interval_reaching_zero_or_a_stronger_reference() -> None:
    found = criteria(summary({**NDCG, "ease": 0.34, "item_knn": 0.31}), difference(-0.01))
    assert [c["met"] for c in found["checks"]] == [False, False, False]
    closer = criteria(summary({**NDCG, "most_popular": 0.28}), difference(0.01))
    assert not closer["checks"][0]["met"]  # 1.07x is below 1.10x, interval or not


RATINGS = [Rating("a", "x", 5.0, 1), Rating("a", "y", 2.0, 2), Rating("a", "z", 4.0, 9),
           Rating("b", "x", 1.0, 3), Rating("b", "y", 3.0, 7)]  # fmt: skip
ROLES = [TRAIN, VALIDATION, TEST, TRAIN, TEST]


def test_the_system_is_read_just_after_the_latest_folded_rating() -> None:
    assert latest(RATINGS, ROLES, {TRAIN}) == 4
    assert latest(RATINGS, ROLES, {TRAIN, VALIDATION}) == 4
    assert folded_counts(RATINGS, ROLES, {TRAIN, VALIDATION}) == {"a": 2, "b": 1}


def test_positives_only_keeps_the_lists_and_scores_them_again() -> None:
    anything = per_user_holdout(RATINGS, ROLES, TEST, {TRAIN, VALIDATION}, 4, positive=None)
    phase = Phase("any", rows=rows_of("test", anything))
    score(phase, "blend", [["z"], ["y"]])
    score(phase, "popular", [["q"], ["y"]])
    assert phase.per_user["popular"][1]["hit_rate@10"] == 1.0
    positives = per_user_holdout(RATINGS, ROLES, TEST, {TRAIN, VALIDATION}, 4)
    kept = restrict(phase, positives, "test")
    assert [r.user_id for r in kept.rows] == ["a"]  # b's test rating is 3
    assert kept.lists == {"blend": [["z"]], "popular": [["q"]]}
    assert kept.per_user["blend"][0]["hit_rate@10"] == 1.0
    assert kept.per_user["popular"][0]["hit_rate@10"] == 0.0


def test_the_streaming_baselines_leave_the_count_to_the_batch_popularity() -> None:
    assert [m.key for m in system_baselines()] == [
        "popular", "trending", "cooccurrence", "content", "random",
    ]  # fmt: skip


def per_user_document() -> dict[str, Any]:
    config = EvaluationConfig(folder=Path("ml"), resamples=100, seed=1)
    phase = Phase("test", rows=rows_of("test", per_user_holdout(
        RATINGS, ROLES, TEST, {TRAIN, VALIDATION}, 4, positive=None)))  # fmt: skip
    lists = {"blend": [["z"], ["y"]], "popular": [["q"], ["y"]], "trending": [["q"], ["q"]],
             "random": [["q"], ["q"]], "most_popular": [["q"], ["y"]],
             "item_knn": [["z"], ["q"]], "ease": [["q", "z"], ["y"]],
             "ials": [["z"], ["y"]]}  # fmt: skip
    for key, value in lists.items():
        score(phase, key, value)
    test_summary = phase_summary(phase, 3, config)
    others = [k for k in lists if k != "blend"]
    paired_test = paired(phase, others, config)
    weights = {"content": 1.0, "popular": 1.0}
    return {
        "split": {"rule": "per user, in time order: ...", "users": 2, "evaluated_users": 2,
                  "ratings": {"train": 2, "validation": 1, "test": 2},
                  "validation_read_at": "v-moment", "test_read_at": "t-moment",
                  "positive_rating": 4.0, "validation_users": 2,
                  "test_users_with_a_positive": 2, "test_users_without_a_positive": 3},
        "methods": {k: {"label": f"Label {k}", "description": "d"} for k in lists},
        "baselines": ["popular", "trending", "random"],
        "references": {"ease": {"setting": {"lambda": 250.0},
                                "tried": [{"setting": {"lambda": 250.0}, "ndcg@10": 0.12}],
                                "seconds": 3.0}},
        "settings": {"popularity_half_life_days": 730.0},
        "chosen_weights": weights, "configured_weights": weights,
        "selection": {"best": weights},
        "validation": test_summary, "test": test_summary, "test_any_rating": test_summary,
        "paired_test": paired_test,
        "criteria": criteria(test_summary, paired_test),
        "timings": {"load": 50.0},
    }  # fmt: skip


def test_the_report_opens_with_the_per_user_protocol() -> None:
    document = {**results(), "per_user": per_user_document()}
    text = render_markdown(document)
    per_user = text.index("## Per-user temporal holdout")
    assert per_user < text.index("## As it would run in production: one global timeline")
    assert "- blend >= item k-NN: 2.00x: **met**" in text
    assert "- blend >= 0.9 x EASE: 1.23x: **met**" in text
    assert (
        "the best non-personal baseline, with the paired 95% interval of the difference "
        "above 0: 2.00x: **not met**" in text
    )  # two users: the interval reaches 0
    assert "(3 users without a positive in their test set are counted" in text
    assert "| Label ease | 0.815 | 1.23 |" in text  # EASE finds a's item second
    assert "- Label ease: **lambda 250** (validation NDCG@10: lambda 250: 0.120; 3 s)." in text
    assert "| per user: load | 50 |" in text
    assert "per user: NDCG@10 blend 1.000" in headline(document)
