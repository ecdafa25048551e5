"""The report's sections beyond the main tables: paired differences, validation
windows, why the verdict is what it is, headroom, the choice of weights and half-lives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.relevance.tables import (
    cell,
    number_text,
    weights_text,
)


def paired_table(results: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    lines = [
        "| blend minus | HitRate@10 difference [95% CI] | NDCG@10 difference [95% CI] |",
        "|---|---|---|",
    ]
    for key, diff in results["paired_test"].items():
        lines.append(
            f"| {labels.get(key, key)} | {cell(diff['hit_rate@10'])} | {cell(diff['ndcg@10'])} |"
        )
    return lines


def windows_table(results: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    validation = results["validation"]
    periods = validation.get("periods", {})
    keys = ["blend", *results["baselines"]]
    lines = [
        "| window | users (with history) | " + " | ".join(labels.get(k, k) for k in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for window in results["split"]["validation_windows"]:
        block = periods.get(window["window"]) or validation["all"]
        methods = block["methods"]
        values = " | ".join(number_text(methods[k]["ndcg@10"]["mean"]) for k in keys)
        lines.append(
            f"| {window['window']}: {window['start'][:10]} to {window['end'][:10]} | "
            f"{window['users']} ({block.get('users_with_history', '-')}) | {values} |"
        )
    return lines


def why_section(results: Mapping[str, Any]) -> list[str]:
    """Why the blend's lead is or is not outside the best baseline's interval, in the
    run's own numbers."""
    test = results["test"]
    verdict = results["verdict"]
    if all(v["outside_best_baseline_interval"] for v in verdict.values()):
        return []
    cold, warm = test["without_history"], test["with_history"]
    if not cold["users"] or not warm["users"]:
        return []
    best = verdict["ndcg@10"]["best_baseline"]
    paired_positive = all(
        difference["low"] > 0
        for metrics in results["paired_test"].values()
        for difference in metrics.values()
    )

    def mean(block: Mapping[str, Any], key: str, metric: str) -> str:
        return number_text(block["methods"][key][metric]["mean"])

    return [
        "### Why the blend's lead stays inside the best baseline's interval",
        "",
        f"{cold['users']} of the {test['users']} test users "
        f"({cold['users'] / test['users']:.0%}) rated nothing before the cut-off: MovieLens "
        "users rate most of their films in their first sessions, so most of the people "
        f"active in the last {results['split']['test_fraction']:.0%} of the ratings are new. "
        "For them no method can "
        "personalize, and the blend's non-personal signals rank much as popularity does "
        f"(NDCG@10 {mean(cold, 'blend', 'ndcg@10')} against "
        f"{mean(cold, best, 'ndcg@10')}). Whatever lead the blend has comes from the "
        f"{warm['users']} users "
        f"with history (HitRate@10 {mean(warm, 'blend', 'hit_rate@10')} against "
        f"{mean(warm, 'popular', 'hit_rate@10')} for popularity and "
        f"{mean(warm, 'trending', 'hit_rate@10')} for trending; NDCG@10 "
        f"{mean(warm, 'blend', 'ndcg@10')} against {mean(warm, best, 'ndcg@10')} and "
        f"{mean(warm, 'trending', 'ndcg@10')}), diluted over all {test['users']}, while "
        f"an interval over {test['users']} users is about "
        f"±{half_width(test, best, 'hit_rate@10')} wide on HitRate@10 and "
        f"±{half_width(test, best, 'ndcg@10')} on NDCG@10. "
        + (
            "The paired comparison above, which removes the variation between users that "
            "both methods share, puts the blend's lead over every baseline above 0 on both "
            "metrics."
            if paired_positive
            else "Even the paired comparison above does not put the blend's lead over every "
            "baseline above 0 on both metrics."
        ),
        "",
    ]


def headroom_section(results: Mapping[str, Any]) -> list[str]:
    """What the blend would need on the users with history, what reference models reach
    there with hindsight, and what other test fractions would change."""
    headroom = results.get("headroom")
    if not headroom:
        return []
    need = headroom["required"]
    models = headroom["reference"]["models"]
    hr, nd = need["hit_rate@10"], need["ndcg@10"]
    lines = [
        "### How far any ranking could go on this split",
        "",
        f"Every method answers the {hr['users'] - hr['with_history']} users without history "
        "from non-personal signals, so only the lists of the "
        f"{hr['with_history']} users with history can move the blend's mean. To clear the "
        "best baseline's upper bound over all users, given what it scores on the others, "
        "the blend would need on the users with history:",
        "",
        "| metric | bound to clear (all users) | blend, users without history "
        "| needed, users with history | blend, users with history | best baseline there |",
        "|---|---|---|---|---|---|",
    ]
    for metric, title in (("hit_rate@10", "HitRate@10"), ("ndcg@10", "NDCG@10")):
        n = need[metric]
        lines.append(
            f"| {title} | {number_text(n['bound'])} | {number_text(n['blend_without_history'])} | "
            f"{number_text(n['required_with_history'])} | {number_text(n['blend_with_history'])} | "
            f"{number_text(n['best_baseline_with_history'])} |"
        )
    lines += [
        "",
        "How much room is there for users with history? Well-known offline recommenders, "
        "computed from the training ratings in NumPy (not through the system, items with at "
        f"least {headroom['reference']['min_item_ratings']} ratings), scored on the same "
        "test users. Each is shown with the best of a small grid of settings chosen **on the "
        "test users themselves**, hindsight that favours it: an optimistic bound, not a "
        "competitor. The prior is positive ratings decayed with the half-life named.",
        "",
        "| reference (best setting on the test users) | settings tried | users "
        "| HitRate@10 | NDCG@10 |",
        "|---|---|---|---|---|",
    ]
    for model in models.values():
        lines.append(
            f"| {model['label']}: {model['setting']} | {model['settings_tried']} | "
            f"{model['users']} | {cell(model['hit_rate@10'])} | {cell(model['ndcg@10'])} |"
        )
    personal = [m for k, m in models.items() if k != "decayed_popularity"]
    if personal and nd["required_with_history"] is not None:
        best = max(personal, key=lambda m: m["ndcg@10"]["mean"])
        reached = best["ndcg@10"]["mean"] >= nd["required_with_history"]
        lines += [
            "",
            f"The best of them, {best['label'].split(' (')[0]} ({best['setting']}), reaches "
            f"NDCG@10 {number_text(best['ndcg@10']['mean'])} on the users with history "
            + (
                f"against the {number_text(nd['required_with_history'])} needed: "
                "so there is room, and the blend falls short of it."
                if reached
                else f"where the blend would need {number_text(nd['required_with_history'])} "
                f"(and its upper bound is {number_text(best['ndcg@10']['high'])}): on this split "
                "no ranking of the users with history that these well-tested methods point to "
                "could lift the blend's NDCG@10 above the best baseline's interval."
            ),
        ]
    popularity = models.get("decayed_popularity")
    if popularity and "without_history" in popularity:
        lines += [
            "",
            "For users without history, popularity time-decayed with the best of "
            f"{popularity['settings_tried']} half-lives on the test users "
            f"({popularity['setting'].removeprefix('half-life ')}) reaches NDCG@10 "
            f"{number_text(popularity['without_history']['ndcg@10'])} against the blend's "
            f"{number_text(nd['blend_without_history'])}. {system_decay_text(results)} "
            + (
                "Decayed so, the system's popularity is as strong a baseline as the blend on "
                "those users (this reference scores "
                f"{cell(popularity['ndcg@10'])} over all users): the blend's lead can only "
                "come from the users with history."
                if results.get("settings", {}).get("popularity_half_life_days")
                else "Set so, the system's popularity would be a baseline as strong as the "
                "blend on those users (this reference scores "
                f"{cell(popularity['ndcg@10'])} over all users), and the blend's lead would "
                "again come from the users with history alone."
            ),
        ]
        combined = []
        for metric, title in (("hit_rate@10", "HitRate@10"), ("ndcg@10", "NDCG@10")):
            n = need[metric]
            cold = max(n["blend_without_history"], popularity["without_history"][metric])
            warm = max(
                [n["blend_with_history"] or 0.0]
                + [m[metric]["mean"] for k, m in models.items() if k != "decayed_popularity"]
            )
            users, with_history = n["users"], n["with_history"]
            mean = (cold * (users - with_history) + warm * with_history) / users
            verdict = "above" if mean > n["bound"] else "still not above"
            combined.append(
                f"{title} {number_text(mean)}, {verdict} the bound {number_text(n['bound'])}"
            )
        lines += [
            "",
            "Taking, for each group of users, the best of the blend and of every reference "
            "above (all chosen with hindsight, and the best baseline's bound left where it "
            f"is) would give over all users: {'; '.join(combined)}.",
        ]
    sizes = headroom.get("split_sizes") or []
    if sizes:
        current = results["split"]["test_fraction"]
        lines += [
            "",
            "Would another test period help? With W users with history among N, the lead "
            "over all users is the lead on users with history times W/N, while an "
            "interval's half-width shrinks as 1/sqrt(N): what the split decides is "
            "W/sqrt(N). Counting users only (no scores):",
            "",
            "| last part of the timeline | users N | with history W | W/sqrt(N) |",
            "|---|---|---|---|",
        ]
        for size in sizes:
            mark = " (this run)" if size["by"] == "ratings" and size["fraction"] == current else ""
            lines.append(
                f"| {size['fraction']:.0%} of the {size['by']}{mark} | {size['users']} | "
                f"{size['with_history']} | {size['with_history_over_root_users']:.2f} |"
            )
        here = max(
            (
                s["with_history_over_root_users"]
                for s in sizes
                if s["by"] == "ratings" and s["fraction"] == current
            ),
            default=0.0,
        )
        best = max(s["with_history_over_root_users"] for s in sizes)
        if here > 0:
            lines += [
                "",
                f"No cut-off improves W/sqrt(N) by more than {max(best / here - 1, 0.0):.0%} "
                "over this run's: a later or longer test period brings in new users, not "
                "users with history.",
            ]
    return [*lines, ""]


def selection_section(results: Mapping[str, Any]) -> list[str]:
    """How the configuration was picked: the fewest changes to the defaults that
    validation does not clearly rank below its best."""
    selection = results.get("selection")
    if not selection or not selection.get("considered"):
        return []
    several = len(selection.get("variants") or []) > 1

    def configuration(weights: Mapping[str, float], days: float) -> str:
        text = weights_text(weights)
        return f"{text}; popularity {days_text(days)}" if several else text

    best = configuration(selection["best"], selection["best_popularity_half_life_days"])
    lines = [
        "",
        f"The best on validation is {best}. A default changes only when validation "
        "clearly prefers another configuration, so the configurations below were tried "
        "in order of how many defaults they change, and the first that the best does not "
        "clearly beat (the paired bootstrap interval of the best's per-user NDCG@10 lead "
        "reaches 0) was chosen:",
        "",
        "| configuration | changes to the defaults | NDCG@10 | best minus this |",
        "|---|---|---|---|",
    ]
    for option in selection["considered"]:
        lead = option["best_minus_this"]
        lines.append(
            f"| {configuration(option['weights'], option['popularity_half_life_days'])} | "
            f"{', '.join(option['changes']) or 'none'} | {option['ndcg@10']:.3f} | "
            f"{cell(lead) if lead else '(the best)'} |"
        )
    changes = selection.get("changes") or []
    lines += [
        "",
        "Chosen: "
        + (f"a change of {' and '.join(changes)}" if changes else "the defaults")
        + ("; the configured defaults should follow it." if changes else "."),
    ]
    return lines


def days_text(days: float) -> str:
    return "no decay" if not days else f"{days:g} days"


def half_lives_section(results: Mapping[str, Any]) -> list[str]:
    """The popularity half-life: one fold of the user model per candidate, each with
    its own grid on the same validation users."""
    selection = results.get("selection") or {}
    variants = selection.get("variants") or []
    if len(variants) < 2:
        return []
    chosen = results.get("settings", {}).get("popularity_half_life_days")
    lines = [
        "",
        "## Popularity half-life, chosen on validation with the weights",
        "",
        "Popularity is decayed as the user model folds each event, so its half-life is not "
        "a per-request weight: the same events were folded once per candidate "
        "(`ATTUNE_POPULARITY_HALF_LIFE_DAYS`), each fold its own consumer group and Redis "
        "namespace, and the whole grid was ranked on each for the same validation users. "
        f"Configured: {days_text(selection['configured_popularity_half_life_days'])}; best on "
        f"validation: {days_text(selection['best_popularity_half_life_days'])}; chosen "
        f"(the rule above): **{days_text(chosen) if chosen is not None else '?'}**.",
        "",
        "| popularity half-life | best weighting on validation | NDCG@10 | HitRate@10 "
        "| popularity alone: NDCG@10 | HitRate@10 |",
        "|---|---|---|---|---|---|",
    ]
    for v in variants:
        best, alone = v["best"], v.get("popular_alone") or {}
        mark = "**" if v["popularity_half_life_days"] == chosen else ""
        lines.append(
            f"| {mark}{days_text(v['popularity_half_life_days'])}{mark} | "
            f"{weights_text(best['weights'])} | {best['ndcg@10']:.3f} | "
            f"{best['hit_rate@10']:.3f} | {number_text(alone.get('ndcg@10'))} | "
            f"{number_text(alone.get('hit_rate@10'))} |"
        )
    return lines


def system_decay_text(results: Mapping[str, Any]) -> str:
    settings = results.get("settings", {})
    trending = settings.get("trending_half_life_days")
    popularity = settings.get("popularity_half_life_days")
    parts = []
    if trending is not None:
        parts.append(f"the system's trending decays with a {trending:g}-day half-life")
    if popularity is not None:
        parts.append(
            "its popularity does not decay (`ATTUNE_POPULARITY_HALF_LIFE_DAYS=0`)"
            if not popularity
            else f"its popularity with a {popularity:g}-day half-life"
        )
    return ("In this run " + " and ".join(parts) + ".") if parts else ""


def half_width(block: Mapping[str, Any], key: str, metric: str) -> str:
    e = block["all"]["methods"][key][metric]
    return number_text((e["high"] - e["low"]) / 2, 2)
