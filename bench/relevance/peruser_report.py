"""The report's per-user section: the criteria, the tables with the batch references,
the paired differences and what validation chose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.relevance.tables import COLUMNS, cell, metrics_table, number_text, weights_text

PUBLISHED = (
    "For orientation only, since the protocols differ: on ml-100k with per-user random "
    "80/20 splits and full ranking, published NDCG@10 is about 0.22 for popularity, "
    "0.38-0.40 for item k-NN and 0.44 for BPR (quoted, not measured here)."
)


def setting_text(setting: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in setting.items()) or "-"


def method_order(per_user: Mapping[str, Any]) -> list[str]:
    keys = list(per_user["methods"])
    return ["blend", *[k for k in keys if k != "blend"]]


def criteria_lines(per_user: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    found = per_user["criteria"]
    best = found["best_non_personal"]
    difference = found["best_non_personal_difference"]
    lines = [
        f"NDCG@10 of the blend on the test set: {number_text(found['blend'])}. The best "
        f"non-personal baseline is {labels.get(best, best).lower()}; the blend minus it, "
        f"per user, is {cell(difference)} (paired 95% bootstrap).",
        "",
    ]
    for check in found["checks"]:
        ratio = check["ratio"]
        ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
        lines.append(
            f"- {check['criterion']}: {ratio_text}: **{'met' if check['met'] else 'not met'}**"
        )
    return [*lines, ""]


def ratio_table(per_user: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    methods = per_user["test"]["all"]["methods"]
    blend = methods["blend"]["ndcg@10"]["mean"]
    lines = [
        "| blend against | its NDCG@10 | blend / it | blend minus it, NDCG@10 [95% paired CI] "
        "| HitRate@10 difference |",
        "|---|---|---|---|---|",
    ]
    for key in method_order(per_user)[1:]:
        theirs = methods[key]["ndcg@10"]["mean"]
        ratio = f"{blend / theirs:.2f}" if theirs > 0 else "-"
        diff = per_user["paired_test"][key]
        lines.append(
            f"| {labels.get(key, key)} | {number_text(theirs)} | {ratio} | "
            f"{cell(diff['ndcg@10'])} | {cell(diff['hit_rate@10'])} |"
        )
    return lines


def chosen_lines(per_user: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    selection = per_user["selection"]
    lines = [
        f"- The blend's weights: **{weights_text(per_user['chosen_weights'])}** (configured "
        f"defaults: {weights_text(per_user['configured_weights'])}; the grid's best: "
        f"{weights_text(selection['best'])}), with the popularity half-life "
        f"{number_text(per_user['settings']['popularity_half_life_days'], 0)} days, by the "
        "same rule as the global protocol below: the fewest changes to the defaults that "
        "validation does not clearly rank below its best.",
    ]
    for key, reference in per_user["references"].items():
        tried = ", ".join(
            f"{setting_text(t['setting'])}: {t['ndcg@10']:.3f}" for t in reference["tried"]
        )
        lines.append(
            f"- {labels.get(key, key)}: **{setting_text(reference['setting'])}** "
            f"(validation NDCG@10: {tried}; {reference['seconds']:g} s)."
        )
    return lines


def per_user_section(results: Mapping[str, Any]) -> list[str]:
    per_user = results.get("per_user")
    if not per_user:
        return []
    labels = {key: m["label"] for key, m in per_user["methods"].items()}
    split = per_user["split"]
    ratings = split["ratings"]
    keys = method_order(per_user)
    test, any_rating = per_user["test"], per_user["test_any_rating"]
    return [
        "## Per-user temporal holdout",
        "",
        f"{split['rule'][0].upper()}{split['rule'][1:]} ({split['evaluated_users']} of "
        f"{split['users']} users; {ratings.get('train', 0):,} training, "
        f"{ratings.get('validation', 0):,} validation and {ratings.get('test', 0):,} test "
        "ratings). The training ratings went through the real system in timestamp order "
        "(Kafka and the user model, on an embedded stack of its own, with the movies the "
        "global protocol's embedder put in the vector index); "
        f"validation users were answered as of {split['validation_read_at']}, the latest "
        "training rating. Weights and settings were chosen on validation only; then the "
        "validation ratings were folded and the test set scored once, as of "
        f"{split['test_read_at']}. Every list excludes what the user has in the folded "
        "data. The batch references are fitted on exactly the same events (training for "
        "validation, training and validation for test), rank the whole catalog they know "
        "and serve nothing.",
        "",
        *criteria_lines(per_user, labels),
        f"### Test: a rating of {split['positive_rating']:g} or more is a positive",
        "",
        f"{test['users']} users ({split['test_users_without_a_positive']} users without a "
        "positive in their test set are counted here and left out). Means with 95% "
        "bootstrap intervals over users:",
        "",
        *metrics_table(test["all"], keys, labels),
        "",
        "The blend against every other method on the same users (paired bootstrap of the "
        "per-user difference; an interval above 0 means the blend is better):",
        "",
        *ratio_table(per_user, labels),
        "",
        "### Test: any rating is a positive",
        "",
        f"{any_rating['users']} users:",
        "",
        *metrics_table(any_rating["all"], keys, labels),
        "",
        "### Chosen on validation",
        "",
        *chosen_lines(per_user, labels),
        "",
        f"Validation ({per_user['validation']['users']} users with a validation rating of "
        f"{split['positive_rating']:g} or more):",
        "",
        *metrics_table(per_user["validation"]["all"], keys, labels, columns=COLUMNS[:4]),
        "",
        PUBLISHED,
        "",
    ]


def per_user_headline(results: Mapping[str, Any]) -> list[str]:
    per_user = results.get("per_user")
    if not per_user:
        return []
    found = per_user["criteria"]
    return [
        f"per user: NDCG@10 blend {found['blend']:.3f}; "
        + "; ".join(
            f"{c['criterion']}: {'met' if c['met'] else 'not met'}" for c in found["checks"]
        )
    ]


__all__ = ["per_user_headline", "per_user_section"]
