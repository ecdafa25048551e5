"""The outputs of a run: the table (terminal and Markdown), the JSON file, the PNG plots
and docs/benchmarks.md."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.results import Figure, Results

ORDER = (
    "embedder", "usermodel", "ingest", "recommendations", "search", "rps", "freshness",
    "memory", "scaling",
)  # fmt: skip

METHODS: dict[str, str] = {
    "embedder": "N MovieLens films produced to the content topic, then `attune run embedder` "
    "(its own process, Qdrant Edge folder) consuming them: docs/s from its first consumed "
    "batch to its /metrics counting N documents embedded. Raw limit: `Embedder."
    "embed_documents` (fastembed) alone on the same N texts in chunks of the consumer's "
    "batch size (500), nothing else running; timed before and after the pipeline and "
    "averaged. Both sides first take one untimed batch of other films (warm-up).",
    "usermodel": "MovieLens ratings (timestamp order) produced to the events topic, then "
    "`attune run usermodel` folding them: events/s from its first consumed batch to its "
    "/metrics counting them all. Raw limit: the Redis pipelines the fold sends (the same "
    "EVALSHA calls, keys and arguments, recorded from `UserModelFolder.fold` on decoded "
    "events) replayed on an emptied namespace: Redis and Lua with no Kafka and no Python "
    "fold. `fold_alone_events_per_s` in the JSON is the fold without Kafka.",
    "ingest": "`attune run ingest` (one uvicorn process) receiving `POST /v1/events` bodies "
    "of 100 MovieLens ratings from the load generator (another process, 8 keep-alive "
    "connections, closed loop); events/s counted from the 202 answers (the broker stored "
    "every event, acks=all). Raw limit: one aiokafka producer (acks=all, the ingest's "
    "producer settings) sending the same events, already serialized, 100 at a time with 8 "
    "groups in flight.",
    "recommendations": "`attune run query` on the index, `GET /v1/users/{id}/"
    "recommendations?limit=10` for the 610 MovieLens users (folded from all their "
    "ratings) by 8 concurrent clients of the load generator; latency measured by the "
    "client. Raw limit: `index.search` alone (the user's profile vector, the films they "
    "saw excluded, 50 results), one client, in the benchmark process.",
    "search": "`POST /v1/search` with 40 short queries, one client (the same with 8 clients "
    "is in the JSON: the model embeds one query at a time). Raw limit: `embed_query` + "
    "`index.search` alone, one client.",
    "rps": "Recommendations as above with 32 concurrent clients for a fixed time: the "
    "throughput of one `attune run query` process.",
    "freshness": "`attune run ingest`, `attune run usermodel` and `attune run query` as three "
    "processes. A steady background of rating events (bodies of 10, open loop) and, every "
    "250 ms, a 'like' by a new user; that user's recommendations are polled every 10 ms "
    "until they turn personalized. Freshness: from sending the POST to receiving the first "
    "personalized answer.",
    "memory": "After the live fold: `MEMORY USAGE key SAMPLES 0` of every per-user key of "
    "the MovieLens tenant, divided by the (user, recent item) pairs (the users' `recent` "
    "sizes). Tenant-level keys (trending, popularity, co-occurrence) are in the JSON.",
    "scaling": "The query figures at each index size (MovieLens films, most-rated first; "
    "past 9,742 synthetic items: a film's vector plus noise, written straight to the index, "
    "because embedding 100k texts would take ~10 minutes). The figure is the largest "
    "exponent k of latency ~ items^k (recommendations and search, p50 and p99).",
}


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
        "raw_search": ("vector search alone", "tab:blue", ":"),
        "search": ("search, HTTP (1 client)", "tab:orange", "-"),
        "raw_embed_search": ("embedding + search alone", "tab:orange", ":"),
    }
    for key, (label, colour, line) in styles.items():
        values = sorted(series.get(key) or [])
        if not values:
            continue
        shares = [(n + 1) / len(values) for n in range(len(values))]
        ax.plot(values, shares, label=label, color=colour, linestyle=line)
    for target, colour in ((10, "tab:blue"), (25, "tab:orange")):
        ax.axvline(target, color=colour, linestyle="--", linewidth=0.8)
    ax.axhline(0.99, color="gray", linewidth=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale); dashed: the p99 targets")
    ax.set_ylabel("share of requests")
    ax.set_title(f"Latency at {series['items']:,} items (CDF)")
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
        ("recs", "recommendations (8 clients)", "tab:blue"),
        ("search", "search (1 client)", "tab:orange"),
        ("raw_search", "vector search alone", "tab:gray"),
        ("raw_embed_search", "embedding + search alone", "tab:brown"),
    ):
        left.plot(items, [p[key]["p50"] for p in points], "o-", color=colour, label=f"{label} p50")
        left.plot(items, [p[key]["p99"] for p in points], "s--", color=colour, alpha=0.6,
                  label=f"{label} p99")  # fmt: skip
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("items in the index")
    left.set_ylabel("latency (ms)")
    left.set_title("Latency vs items")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    left.grid(alpha=0.3, which="both")
    right.plot(items, [p["rps"] for p in points], "o-", color="tab:green")
    right.axhline(1_000, color="black", linestyle="--", linewidth=1)
    right.set_xscale("log")
    right.set_xlabel("items in the index")
    right.set_ylabel("recommendations/s (dashed: target)")
    right.set_title("Throughput of one query process")
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
    ax.axvline(500, color="red", linestyle="--", label="target p99 500 ms")
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
    ax.set_title(f"User model in Redis: {figure.measured:,.0f} B per (user, recent item) "
                 f"(target <= 400)", fontsize=9)  # fmt: skip
    return fig


# -- docs/benchmarks.md -------------------------------------------------------------------


def _machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gb')} GB RAM; "
        f"{machine.get('os')} (kernel {machine.get('kernel')}); Python {machine.get('python')}; "
        f"redis-server {machine.get('redis_server')}"
    )


def _scaling_table(points: list[dict[str, Any]]) -> str:
    lines = [
        "| items | recommendations p50 / p99 | search p50 / p99 | vector search alone p50 / p99 "
        "| embedding + search alone p50 / p99 | recommendations/s |",
        "|---|---|---|---|---|---|",
    ]
    for p in points:
        cells = [f"{p['items']:,}"]
        for key in ("recs", "search", "raw_search", "raw_embed_search"):
            cells.append(f"{p[key]['p50']:.1f} / {p[key]['p99']:.1f} ms")
        cells.append(f"{p['rps']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _profile_section(figure: Figure) -> list[str]:
    profile = figure.profile or {}
    lines = [f"### {figure.title}", ""]
    if "error" in profile:
        return [*lines, f"No profile: {profile['error']}", ""]
    if profile.get("kind") == "memory breakdown":
        lines.append("Share of the user model's bytes by key:")
        lines += [f"- {label}: {share}%" for label, share in profile.get("top_self", [])]
        return [*lines, ""]
    seconds, samples = float(profile.get("seconds", 0)), int(profile.get("samples", 0))
    busy = samples / (seconds * 100) if seconds else 0.0  # py-spy samples 100 times a second
    lines.append(
        f"py-spy, {seconds:.0f} s, {samples} samples: on average {busy:.2f} threads running "
        "Python" + (" (the process mostly waited: the time goes to a wait, not to CPU)"
                    if busy < 0.5 else "")
        + f"; flame graph `{Path(str(profile.get('flamegraph', ''))).name}` in the results "
        "folder."
    )  # fmt: skip
    lines += ["", "Project functions, share of samples including what they call:", ""]
    lines += [f"- {share}% `{label}`" for label, share in profile.get("top_project", [])[:8]]
    lines += ["", "Frames with the most samples of their own:", ""]
    lines += [f"- {share}% `{label}`" for label, share in profile.get("top_self", [])[:8]]
    return [*lines, ""]


def docs_markdown(results: Results, plot_names: Sequence[str]) -> str:
    load = f"{results.load_before} before, {results.load_after} after"
    lines = [
        "# Benchmarks",
        "",
        "Speed as ratios to the limits, on real data: each figure is measured next to its raw "
        "limit on the same machine in the same run. MovieLens latest-small (9,742 films as "
        "content, 100,836 ratings as events) is the workload; synthetic items only scale the "
        "index past it. Everything runs on loopback on an embedded stack the benchmark "
        "starts and stops (Tansu broker, a private redis-server, Qdrant Edge folders); the "
        "services run as `attune run <service>` processes and the load generator "
        "(`bench/loadgen.py`) in another process.",
        "",
        f"- Command: `{results.command}`" + (" (quick: small sizes)" if results.quick else ""),
        f"- Date: {results.started_at}; the run took {results.duration_s / 60:.1f} minutes",
        f"- Machine: {_machine_line(results.machine)}",
        f"- Load average (1, 5, 15 min): {load}",
        "",
        markdown_table(results),
        "",
    ]
    if results.notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in results.notes] + [""]
    points = results.series.get("scaling")
    if points:
        lines += ["## Scaling", "", _scaling_table(points), ""]
        indexes = results.series.get("indexes", {})
        if indexes:
            built = "; ".join(
                f"{int(k):,} items ({v['synthetic']:,} synthetic): written {v['write_s']:.0f} s, "
                f"HNSW {v['optimize_s']:.0f} s"
                for k, v in indexes.items()
            )
            lines += [f"Index builds: {built}.", ""]
    missed = [f for f in ordered(results.figures) if f.met is False and f.profile]
    if missed:
        lines += ["## Profiles of the missed targets", ""]
        shown: dict[str, str] = {}
        for figure in missed:
            assert figure.profile is not None
            same = shown.get(str(figure.profile.get("collapsed")))
            if same:
                lines += [f"### {figure.title}", "", f"The profile of {same}, above.", ""]
                continue
            shown[str(figure.profile.get("collapsed"))] = f"'{figure.title}'"
            lines += _profile_section(figure)
    if plot_names:
        lines += ["## Plots", ""]
        lines += [f"![{name}](benchmarks/{name})" for name in plot_names]
        lines.append("")
    lines += ["## How each figure is measured", ""]
    for key in ORDER:
        if key in METHODS:
            lines.append(f"- **{key}**: {METHODS[key]}")
    lines += [
        "",
        "Run it again with `attune bench` (`python -m bench` in a checkout); `--quick` for a "
        "small run, `--only <phase>` for one phase. The JSON of every figure, the profiles "
        "(py-spy collapsed stacks and SVG flame graphs) and the plots go to "
        "`bench/results/` (not committed).",
        "",
    ]
    return "\n".join(lines)


def write_docs(results: Results, docs_file: Path, plot_paths: Sequence[Path]) -> Path:
    images = docs_file.parent / docs_file.stem
    images.mkdir(parents=True, exist_ok=True)
    names = []
    for path in plot_paths:
        shutil.copyfile(path, images / path.name)
        names.append(path.name)
    docs_file.write_text(docs_markdown(results, names))
    return docs_file


__all__ = [
    "METHODS",
    "docs_markdown",
    "fmt_value",
    "markdown_table",
    "plots",
    "print_table",
    "rows",
    "write_docs",
    "write_json",
]
