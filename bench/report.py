"""The outputs of a run: the table (terminal and Markdown), the JSON file and the PNG
plots (docs/benchmarks.md is :mod:`bench.docs`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.results import Figure, Results

ORDER = (
    "embedder", "usermodel", "ingest", "recommendations", "recommendations_rps", "similar",
    "trending", "search", "freshness", "memory", "scaling",
)  # fmt: skip

# -- formatting -------------------------------------------------------------------------


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "exponent":
        return f"{value:.2f}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:,.0f} {unit}"


def fmt_measured(figure: Figure) -> str:
    text = fmt_value(figure.measured, figure.unit)
    return f"p99 {text}" if figure.unit == "ms" and figure.measured is not None else text


def fmt_ratio(figure: Figure) -> str:
    ratio = figure.ratio
    if ratio is None:
        return "-"
    return f"{ratio:.1f}x" if figure.unit == "ms" else f"{ratio:.2f}x"


def fmt_failures(figure: Figure) -> str:
    """How many requests, probes or checks failed, by reason: "0", or "3 (503: 2, ...)"."""
    if not figure.failed:
        return "0"
    reasons = ", ".join(f"{reason}: {count:,}" for reason, count in figure.failures.items())
    return f"{figure.failed:,} ({reasons})"


def fmt_met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[met]


def ordered(figures: Sequence[Figure]) -> list[Figure]:
    rank = {key: n for n, key in enumerate(ORDER)}
    return sorted(figures, key=lambda f: rank.get(f.key, len(ORDER)))


def rows(results: Results) -> list[list[str]]:
    return [
        [
            f.title,
            fmt_measured(f),
            fmt_failures(f),
            fmt_value(f.raw, f.unit),
            fmt_ratio(f),
            f.target.text if f.target else "-",
            fmt_met(f.met),
        ]
        for f in ordered(results.figures)
    ]


HEADER = ["figure", "measured", "failed", "raw limit", "ratio", "target", "met?"]
RAW_COLUMN = HEADER.index("raw limit")


def print_table(results: Results, console: Console) -> None:
    table = Table(title="Attune benchmarks" + (" (quick)" if results.quick else ""))
    for name in HEADER:
        table.add_column(name, overflow="fold")
    for row in rows(results):
        style = "red" if row[-1] == "NO" else ("green" if row[-1] == "yes" else None)
        table.add_row(*row, style=style)
    console.print(table)


def markdown_table(results: Results) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for figure, row in zip(ordered(results.figures), rows(results), strict=True):
        if figure.raw_label and figure.raw is not None:
            row[RAW_COLUMN] = f"{row[RAW_COLUMN]} ({figure.raw_label})"
        row[-1] = f"**{row[-1]}**" if row[-1] == "NO" else row[-1]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def write_json(results: Results, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.to_json(), indent=1, default=str) + "\n")
    return path


# -- plots --------------------------------------------------------------------------------


def plots(results: Results, out_dir: Path) -> list[Path]:
    """PNG plots of what the run measured (matplotlib, Agg backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results.notes.append("matplotlib is not installed: no plots")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, draw in (
        ("throughput", _throughput),
        ("latency", _latency),
        ("scaling", _scaling),
        ("freshness", _freshness),
        ("memory", _memory),
    ):
        figure = draw(plt, results)
        if figure is None:
            continue
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def _throughput(plt: Any, results: Results) -> Any:
    panels = [f for f in (results.figure(k) for k in ("embedder", "usermodel", "ingest")) if f]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, figure in zip(axes[0], panels, strict=True):
        labels, values = ["measured"], [figure.measured or 0]
        if figure.key == "usermodel" and figure.details.get("fold_alone_events_per_s"):
            labels.append("fold alone\n(no Kafka)")
            values.append(figure.details["fold_alone_events_per_s"])
        if figure.raw is not None:
            labels.append("raw limit")
            values.append(figure.raw)
        colours = ["tab:blue", "tab:gray", "tab:gray"][: len(values)]
        colours[-1] = "tab:gray"
        colours[0] = "tab:green" if figure.met else "tab:red"
        ax.bar(labels, values, color=colours)
        for x, value in enumerate(values):
            ax.annotate(f"{value:,.0f}", (x, value), ha="center", va="bottom", fontsize=8)
        if figure.target is not None:
            level = figure.target.value
            if figure.target.kind == "ratio_at_least" and figure.raw is not None:
                level *= figure.raw
            ax.axhline(level, color="black", linestyle="--", linewidth=1)
            ax.annotate(f"target {figure.target.text}", (0.02, level), xycoords=("axes fraction",
                        "data"), va="bottom", fontsize=7)  # fmt: skip
        ax.set_title(figure.title, fontsize=9, wrap=True)
        ax.set_ylabel(figure.unit)
    fig.tight_layout()
    return fig


def _latency(plt: Any, results: Results) -> Any:
    series = results.series.get("latency_headline")
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    styles = {
        "recommendations": ("recommendations, HTTP", "tab:blue", "-"),
        "ceiling": ("the bare ceiling, HTTP", "tab:blue", "-."),
        "raw_search": ("vector search alone", "tab:blue", ":"),
        "similar": ("similar items, HTTP", "tab:green", "-"),
        "trending": ("trending, HTTP", "tab:red", "-"),
        "search": ("search, HTTP", "tab:orange", "-"),
        "raw_embed_search": ("embedding + search alone", "tab:orange", ":"),
    }
    for key, (label, colour, line) in styles.items():
        values = sorted(series.get(key) or [])
        if not values:
            continue
        shares = [(n + 1) / len(values) for n in range(len(values))]
        ax.plot(values, shares, label=label, color=colour, linestyle=line)
    for key, colour in (("recommendations", "tab:blue"), ("trending", "tab:red"),
                        ("search", "tab:orange")):  # fmt: skip
        figure = results.figure(key)
        if figure is not None and figure.target is not None:
            ax.axvline(figure.target.value, color=colour, linestyle="--", linewidth=0.8)
    ax.axhline(0.99, color="gray", linewidth=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale) from the scheduled send; dashed: the p99 targets")
    ax.set_ylabel("share of requests")
    ax.set_title(f"Latency at {series['items']:,} items, open loop (CDF)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def _scaling(plt: Any, results: Results) -> Any:
    points = results.series.get("scaling")
    if not points or len(points) < 2:
        return None
    items = [p["items"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, colour in (
        ("recs", "recommendations (open loop)", "tab:blue"),
        ("search", "search (open loop)", "tab:orange"),
        ("raw_search", "vector search alone", "tab:gray"),
        ("raw_embed_search", "embedding + search alone", "tab:brown"),
    ):
        for q, style, alpha in (("p50", "o-", 1.0), ("p99", "s--", 0.6)):
            values = [p[key].get(q, float("nan")) for p in points]  # nan: nothing answered
            left.plot(items, values, style, color=colour, alpha=alpha, label=f"{label} {q}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("items in the index")
    left.set_ylabel("latency (ms)")
    left.set_title("Latency vs items")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    left.grid(alpha=0.3, which="both")
    right.plot(items, [p["rps"] or 0 for p in points], "o-", color="tab:green")
    rps = results.figure("recommendations_rps")
    if rps is not None and rps.target is not None:
        right.axhline(rps.target.value, color="black", linestyle="--", linewidth=1)
    right.set_xscale("log")
    right.set_xlabel("items in the index")
    right.set_ylabel("recommendations/s at saturation (dashed: target)")
    right.set_title("Throughput of one query process (wrk)")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _freshness(plt: Any, results: Results) -> Any:
    values = results.series.get("freshness")
    figure = results.figure("freshness")
    if not values or figure is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.hist(values, bins=min(40, max(5, len(values) // 3)), color="tab:purple", alpha=0.8)
    summary = figure.details.get("visible_ms", {})
    for key, style in (("p50", ":"), ("p99", "-")):
        if key in summary:
            ax.axvline(summary[key], color="black", linestyle=style, label=f"{key} "
                       f"{summary[key]:.0f} ms")  # fmt: skip
    hop = figure.details.get("kafka_hop_ms", {})
    if "p99" in hop:
        ax.axvline(hop["p99"], color="gray", linestyle="-.", label=f"Kafka hop alone p99 "
                   f"{hop['p99']:.0f} ms")  # fmt: skip
    if figure.target is not None:
        ax.axvline(figure.target.value, color="red", linestyle="--",
                   label=f"target {figure.target.text}")  # fmt: skip
    ax.set_xlabel("event posted -> visible in recommendations (ms)")
    ax.set_ylabel("probes")
    ax.set_title(figure.title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def _memory(plt: Any, results: Results) -> Any:
    figure = results.figure("memory")
    if figure is None or not figure.details.get("bytes_per_pair_by_kind"):
        return None
    kinds = figure.details["bytes_per_pair_by_kind"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(kinds)[::-1]
    ax.barh(names, [kinds[n] for n in names], color="tab:cyan")
    ax.set_xlabel("bytes per (user, recent item), by key")
    target = f" (target {figure.target.text})" if figure.target else ""
    ax.set_title(f"User model in Redis: {figure.measured:,.0f} B per (user, recent item)"
                 f"{target}", fontsize=9)  # fmt: skip
    return fig


__all__ = [
    "HEADER",
    "ORDER",
    "fmt_failures",
    "fmt_measured",
    "fmt_met",
    "fmt_value",
    "markdown_table",
    "ordered",
    "plots",
    "print_table",
    "rows",
    "write_json",
]
