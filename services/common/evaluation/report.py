"""The evaluation's outputs: a Markdown report (method, split, tables) and the JSON of
the results it is rendered from."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    ("hit_rate@10", "HitRate@10"),
    ("ndcg@10", "NDCG@10"),
    ("recall@20", "Recall@20"),
    ("mrr@20", "MRR@20"),
    ("coverage@10", "Coverage@10"),
    ("novelty@10", "Novelty@10"),
)
SIGNAL_ORDER = ("content", "cooccurrence", "trending", "popular", "tags")
WITH_INTERVAL = {"hit_rate@10", "ndcg@10", "recall@20", "mrr@20", "novelty@10"}
"""Coverage is a property of the set of lists: resampling users with replacement
shrinks that set, so its bootstrap interval is biased low. It is shown without one
(the JSON keeps it)."""


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def cell(estimate: Mapping[str, float], *, interval: bool = True) -> str:
    """``0.653 [0.542, 0.764]``."""
    text = _number(estimate["mean"])
    if interval:
        text += f" [{_number(estimate['low'])}, {_number(estimate['high'])}]"
    return text


def weights_text(weights: Mapping[str, float] | None) -> str:
    if not weights:
        return "-"
    return ", ".join(f"{s} {weights[s]:g}" for s in SIGNAL_ORDER if s in weights)


def metrics_table(
    block: Mapping[str, Any],
    keys: Sequence[str],
    labels: Mapping[str, str],
    *,
    columns: Sequence[tuple[str, str]] = COLUMNS,
    interval: bool = True,
    bold: str | None = "blend",
) -> list[str]:
    methods = block["methods"]
    lines = [
        "| method | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key in keys:
        if key not in methods:
            continue
        label = labels.get(key, key)
        label = f"**{label}**" if key == bold else label
        values = [
            cell(methods[key][metric], interval=interval and metric in WITH_INTERVAL)
            for metric, _ in columns
        ]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return lines


def ablation_table(block: Mapping[str, Any], results: Mapping[str, Any]) -> list[str]:
    methods = block["methods"]
    blend = methods["blend"]
    lines = [
        "| variant | weights | HitRate@10 | Δ | NDCG@10 | Δ | Recall@20 | MRR@20 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ["blend", *results["ablations"]]:
        if key not in methods:
            continue
        row = methods[key]
        label = "blend (chosen)" if key == "blend" else f"minus {key.removeprefix('without_')}"
        weights = weights_text(results["methods"][key]["weights"])
        delta_hr = row["hit_rate@10"]["mean"] - blend["hit_rate@10"]["mean"]
        delta_ndcg = row["ndcg@10"]["mean"] - blend["ndcg@10"]["mean"]
        lines.append(
            f"| {label} | {weights} | {cell(row['hit_rate@10'])} | {delta_hr:+.3f} | "
            f"{cell(row['ndcg@10'])} | {delta_ndcg:+.3f} | {cell(row['recall@20'], interval=False)}"
            f" | {cell(row['mrr@20'], interval=False)} |"
        )
    return lines


def headline(results: Mapping[str, Any]) -> str:
    """The verdict in a few lines, for the terminal."""
    lines = []
    for metric, title in (("hit_rate@10", "HitRate@10"), ("ndcg@10", "NDCG@10")):
        v = results["verdict"][metric]
        lines.append(
            f"{title}: blend {v['blend']:.3f}; best baseline {v['best_baseline']} "
            f"{v['best_baseline_mean']:.3f} (upper 95% bound {v['best_baseline_high']:.3f}); "
            f"beats every baseline: {'yes' if v['beats_every_baseline'] else 'no'}; outside "
            f"its interval: {'yes' if v['outside_best_baseline_interval'] else 'no'}"
        )
    return "\n".join(lines)


def _paired_table(results: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    lines = [
        "| blend minus | HitRate@10 difference [95% CI] | NDCG@10 difference [95% CI] |",
        "|---|---|---|",
    ]
    for key, diff in results["paired_test"].items():
        lines.append(
            f"| {labels.get(key, key)} | {cell(diff['hit_rate@10'])} | {cell(diff['ndcg@10'])} |"
        )
    return lines


def _windows_table(results: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
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
        values = " | ".join(_number(methods[k]["ndcg@10"]["mean"]) for k in keys)
        lines.append(
            f"| {window['window']}: {window['start'][:10]} to {window['end'][:10]} | "
            f"{window['users']} ({block.get('users_with_history', '-')}) | {values} |"
        )
    return lines


def _why(results: Mapping[str, Any]) -> list[str]:
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
        return _number(block["methods"][key][metric]["mean"])

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
        f"±{_half_width(test, best, 'hit_rate@10')} wide on HitRate@10 and "
        f"±{_half_width(test, best, 'ndcg@10')} on NDCG@10. "
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


def _headroom(results: Mapping[str, Any]) -> list[str]:
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
            f"| {title} | {_number(n['bound'])} | {_number(n['blend_without_history'])} | "
            f"{_number(n['required_with_history'])} | {_number(n['blend_with_history'])} | "
            f"{_number(n['best_baseline_with_history'])} |"
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
            f"NDCG@10 {_number(best['ndcg@10']['mean'])} on the users with history "
            + (
                f"against the {_number(nd['required_with_history'])} needed: "
                "so there is room, and the blend falls short of it."
                if reached
                else f"where the blend would need {_number(nd['required_with_history'])} "
                f"(and its upper bound is {_number(best['ndcg@10']['high'])}): on this split "
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
            f"{_number(popularity['without_history']['ndcg@10'])} against the blend's "
            f"{_number(nd['blend_without_history'])}. {_system_decay(results)} "
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
            combined.append(f"{title} {_number(mean)}, {verdict} the bound {_number(n['bound'])}")
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


def _selection(results: Mapping[str, Any]) -> list[str]:
    """How the configuration was picked: the fewest changes to the defaults that
    validation does not clearly rank below its best."""
    selection = results.get("selection")
    if not selection or not selection.get("considered"):
        return []
    several = len(selection.get("variants") or []) > 1

    def configuration(weights: Mapping[str, float], days: float) -> str:
        text = weights_text(weights)
        return f"{text}; popularity {_days(days)}" if several else text

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


def _days(days: float) -> str:
    return "no decay" if not days else f"{days:g} days"


def _half_lives(results: Mapping[str, Any]) -> list[str]:
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
        f"Configured: {_days(selection['configured_popularity_half_life_days'])}; best on "
        f"validation: {_days(selection['best_popularity_half_life_days'])}; chosen "
        f"(the rule above): **{_days(chosen) if chosen is not None else '?'}**.",
        "",
        "| popularity half-life | best weighting on validation | NDCG@10 | HitRate@10 "
        "| popularity alone: NDCG@10 | HitRate@10 |",
        "|---|---|---|---|---|---|",
    ]
    for v in variants:
        best, alone = v["best"], v.get("popular_alone") or {}
        mark = "**" if v["popularity_half_life_days"] == chosen else ""
        lines.append(
            f"| {mark}{_days(v['popularity_half_life_days'])}{mark} | "
            f"{weights_text(best['weights'])} | {best['ndcg@10']:.3f} | "
            f"{best['hit_rate@10']:.3f} | {_number(alone.get('ndcg@10'))} | "
            f"{_number(alone.get('hit_rate@10'))} |"
        )
    return lines


def _system_decay(results: Mapping[str, Any]) -> str:
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


def _half_width(block: Mapping[str, Any], key: str, metric: str) -> str:
    e = block["all"]["methods"][key][metric]
    return _number((e["high"] - e["low"]) / 2, 2)


def render_markdown(results: Mapping[str, Any]) -> str:
    labels = {key: m["label"] for key, m in results["methods"].items()}
    split = results["split"]
    data = results["dataset"]
    test, validation = results["test"], results["validation"]
    boot = results["bootstrap"]
    run = results["run"]
    main_keys = ["blend", *results["baselines"]]
    for extra in ("blend_grid_best", "blend_configured"):
        if extra in results["methods"]:
            main_keys.insert(1, extra)
    verdict = results["verdict"]
    default_path = results["default_path"]
    http = results["http_check"]
    chosen = results["chosen_weights"]
    configured = results["configured_weights"]
    level = round(boot["confidence"] * 100)
    windows = split["validation_windows"]

    out: list[str] = [
        "# Relevance of recommendations, measured on MovieLens",
        "",
        f"Generated by `{run.get('command', 'attune eval movielens DIR')}` on {run['date']} "
        f"({run['machine']}) in {run['seconds']:.0f} s. Every number below comes from that "
        "run; the JSON next to this file holds them all, with more digits.",
        "",
        "## Result",
        "",
        f"Test period ({split['test_cutoff'][:10]} to {split['last_event'][:10]}), all "
        f"{test['users']} users with a held-out positive rating, "
        f"{test['users_with_history']} of them with ratings before the cut-off. Means "
        f"with {level}% bootstrap intervals over users; coverage without one (see Method).",
        "",
        *metrics_table(test["all"], main_keys, labels),
        "",
    ]
    for metric, title in (("hit_rate@10", "HitRate@10"), ("ndcg@10", "NDCG@10")):
        v = verdict[metric]
        beats = (
            "beats every baseline" if v["beats_every_baseline"] else "does not beat every baseline"
        )
        outside = (
            "above the upper bound of its interval"
            if v["outside_best_baseline_interval"]
            else f"not above the upper bound of its interval ({v['best_baseline_high']:.3f})"
        )
        out.append(
            f"- {title}: the blend {beats}: {v['blend']:.3f} against "
            f"{v['best_baseline_mean']:.3f} for the best one, "
            f"{labels[v['best_baseline']].lower()}, {outside}."
        )
    out += [
        "",
        "The intervals above are for each method alone. Comparing two methods on the same "
        "users, the paired bootstrap of the per-user difference is the sharper test (the "
        "same resampled users for both; an interval above 0 means the blend is better):",
        "",
        *_paired_table(results, labels),
        "",
        *_why(results),
        *_headroom(results),
        "### Users with and without ratings before the cut-off",
        "",
        "A user first seen after the cut-off has nothing to personalize from: the blend "
        "answers them with its non-personal signals (popularity and trending, as weighted), "
        "and the single-signal baselines that need history with trending, as the API does. "
        "The two groups:",
        "",
        f"With history ({test['with_history']['users']} users):",
        "",
        *metrics_table(test["with_history"], main_keys, labels, columns=COLUMNS[:4]),
        "",
        f"Without history ({test['without_history']['users']} users):",
        "",
        *metrics_table(test["without_history"], main_keys, labels, columns=COLUMNS[:4]),
        "",
        "## Ablation (test period, all users)",
        "",
        "The chosen weights with one signal set to 0; Δ is the change of the mean. Signals "
        "the chosen weights leave at 0 have no row.",
        "",
        *ablation_table(test["all"], results),
        "",
        "## Diversity (MMR)",
        "",
        "The chosen blend re-ranked by maximal marginal relevance over the items' vectors "
        "(`diversity` per request, `ATTUNE_RECOMMEND_DIVERSITY` by default, 0 = off). Shown "
        "for the trade-off; not tuned:",
        "",
        *metrics_table(test["all"], ["blend", *results["diversified"]], labels, interval=False),
        "",
        "## Weights, chosen on validation only",
        "",
        f"Chosen: **{weights_text(chosen)}**. Configured defaults "
        f"(`ATTUNE_RECOMMEND_WEIGHT_*`): {weights_text(configured)}"
        + (" (the same)." if chosen == configured else "."),
        *_selection(results),
        "",
        f"Validation is {len(windows)} consecutive windows before the test cut-off, each "
        f"holding {split['validation_fraction']:.0%} of the ratings and scored as of its own "
        "cut-off (the user model folded exactly the ratings before it). One window alone is "
        "a small and erratic sample: the windows disagree about the baselines (NDCG@10 "
        "below), so the weights are chosen on all of them pooled.",
        "",
        *_windows_table(results, labels),
        "",
        f"Grid: every weighting of the five signals over {results['grid']['values']} whose "
        f"largest weight is {max(results['grid']['values']):g} ({results['grid']['size']} "
        "weightings; multiplying all weights by one number does not change a ranking). Each "
        "was ranked for every validation user through per-request weight overrides (the "
        "candidates are gathered once per user; nothing is folded again), and the best mean "
        "NDCG@10 won (ties: HitRate@10, then fewer signals), unless its lead over the "
        "configured defaults is within noise (see above). The best ten:",
        "",
        "| weights | NDCG@10 | HitRate@10 |",
        "|---|---|---|",
        *[
            f"| {weights_text(r['weights'])} | {r['ndcg@10']:.3f} | {r['hit_rate@10']:.3f} |"
            for r in results["grid"]["top"]
        ],
        "",
        f"All validation windows pooled ({validation['users']} user-windows, "
        f"{validation['users_with_history']} with history):",
        "",
        *metrics_table(validation["all"], main_keys, labels, columns=COLUMNS[:4]),
        *_half_lives(results),
        "",
        "## Method",
        "",
        f"- Data: `{Path(data['folder']).name}`: {data['items']:,} movies, "
        f"{data['ratings']:,} ratings by {data['users']:,} users. Movies are content items "
        "(title, genres and the users' tags, embedded by the real model); ratings are "
        "`rating` events, produced to Kafka in timestamp order and folded by the user model.",
        f"- Split by time, one global timeline: the test cut-off ({split['test_cutoff']}) "
        f"leaves the last {split['test_fraction']:.0%} of the ratings "
        f"({split['test_events']:,}) after it; before it, {len(windows)} validation "
        f"windows of {split['validation_fraction']:.0%} each start at "
        + ", ".join(w["start"] for w in windows)
        + f". Ratings from {split['first_event']} to {split['last_event']}.",
        "- The real path: an embedded stack (Tansu broker, a private Redis, Qdrant Edge), "
        "the embedder and user-model consumers in this process, the real embedding model. "
        "The ratings before each cut-off are produced and folded, then that period's users "
        "are ranked; the user model is checked to hold exactly the ratings before the "
        "cut-off for every user ranked. The test users are ranked once, after the weights "
        "were chosen.",
        f"- Users: everyone with a rating >= {split['positive_rating']:g} after the cut-off "
        "(within the window, for validation) of a movie they had not rated before it; those "
        "movies are their targets.",
        "- Lists: 20 items per user from `QueryEngine.recommendation_candidates` then "
        "`QueryEngine.rank`, which is what `GET /v1/users/{id}/recommendations` runs, "
        "excluding everything the user rated before the cut-off with an explicit exclusion "
        "set (`exclude=` on the HTTP route): the user model keeps only each user's latest "
        f"{default_path['recent_items_limit']} items. Over HTTP, {http['identical']} of "
        f"{http['users']} sampled test users got the identical list.",
        "- Metrics: HitRate@10 (a target in the first 10); NDCG@10 (binary gain, ideal = "
        "min(10, targets) hits first); Recall@20 (targets in the first 20 over min(20, "
        "targets)); MRR@20 (1/rank of the first target in the 20, else 0); Coverage@10 "
        "(distinct items in all top-10 lists over the catalog); Novelty@10 (share of the "
        "top 10 the user had not rated before the cut-off; 1.0 by construction with the "
        "exclusion set).",
        f"- Intervals: percentile bootstrap over users, {boot['resamples']:,} resamples "
        f"(seed {boot['seed']}), the same resamples for every method. Coverage is shown "
        "without one: resampling users with replacement shrinks the set of lists, which "
        "biases a set-level statistic low.",
        "- Baselines, on the same split and users: "
        + " ".join(
            f"*{labels[k]}*: {results['methods'][k]['description']}" for k in results["baselines"]
        ),
        "- Configuration besides the weights: "
        + ", ".join(
            f"`ATTUNE_{name.upper()}={value}`"
            for name, value in results.get("settings", {}).items()
        )
        + ".",
        "- Without the explicit exclusion (the API's default request, `exclude_seen` only), "
        f"Novelty@10 of the chosen blend over the {default_path['users']} test users with "
        f"history is {_number(default_path['novelty@10'])}: "
        f"{default_path['users_beyond_recent_limit']} of them rated more than "
        f"{default_path['recent_items_limit']} movies before the cut-off, and the user model "
        "only remembers the latest ones.",
        "",
        "## Timings",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:g} |" for name, seconds in run["timings"].items()],
        f"| total | {run['seconds']:g} |",
        "",
        "MovieLens: F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: "
        "History and Context. ACM TiiS 5(4): 19:1-19:19. Read from outside the repository, "
        "under its own licence.",
        "",
    ]
    return "\n".join(out)


def write_outputs(results: Mapping[str, Any], markdown_path: Path, json_path: Path) -> None:
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    markdown_path.write_text(render_markdown(results))


__all__ = ["cell", "headline", "metrics_table", "render_markdown", "weights_text", "write_outputs"]
