"""The report's building blocks: columns, cells with their intervals, the metrics
and ablation tables, the headline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def number_text(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def cell(estimate: Mapping[str, float], *, interval: bool = True) -> str:
    """``0.653 [0.542, 0.764]``."""
    text = number_text(estimate["mean"])
    if interval:
        text += f" [{number_text(estimate['low'])}, {number_text(estimate['high'])}]"
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
