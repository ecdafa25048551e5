"""docs/benchmarks.md is what `python -m bench` wrote: rendering the results it stored
beside the page gives the page byte for byte, so an edit by hand fails here."""

from __future__ import annotations

import json
from pathlib import Path

from bench import docs
from bench.results import Figure, Results

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "benchmarks.md"


def test_the_page_is_the_rendering_of_the_stored_results() -> None:
    stored = json.loads(PAGE.with_suffix(".json").read_text())
    assert docs.docs_from_json(stored) == PAGE.read_text()


def test_the_page_says_it_is_generated_and_its_plots_are_the_runs() -> None:
    assert PAGE.read_text().startswith(docs.GENERATED + "\n")
    stored = json.loads(PAGE.with_suffix(".json").read_text())
    assert sorted(p.name for p in (DOCS / "benchmarks").glob("*.png")) == sorted(stored["plots"])


def test_an_edited_figure_is_noticed() -> None:
    stored = json.loads(PAGE.with_suffix(".json").read_text())
    page = PAGE.read_text()
    first = stored["figures"][0]
    first["measured"] = (first["measured"] or 0) * 2 + 1
    assert docs.docs_from_json(stored) != page


def test_the_methods_quote_the_sizes_of_the_run() -> None:
    results = Results("2025-01-01 12:00 UTC", "python -m bench", True, {}, [])
    results.workload = {"dataset": "ml-latest-small", "items": 1_234, "events": 56_789}
    results.add(Figure("embedder", "e", 1.0, "docs/s", details={"documents": 321,
                                                                 "batch_size": 77}))  # fmt: skip
    results.add(Figure("ingest", "i", 1.0, "events/s", details={"batch": 42, "connections": 3}))
    results.add(Figure("scaling", "s", 1.0, "x"))
    text = docs.docs_markdown(results, [])
    assert "(1,234 films as content, 56,789 ratings as events)" in text
    assert "321 MovieLens films" in text
    assert "batch size (77)" in text
    assert "bodies of 42 MovieLens ratings" in text
    assert "3 keep-alive connections" in text
    assert "past the 1,234 films" in text


def test_the_methods_quote_the_load_of_the_run_and_only_its_figures() -> None:
    results = Results("2025-01-01 12:00 UTC", "python -m bench", True, {}, [])
    results.add(Figure("recommendations", "r", 1.0, "ms", details={
        "offered_per_s": 123.0, "warmup_s": 2.0, "seconds": 8.0, "timeout_s": 2.0,
        "loadgen_cpu_share": 0.07, "users": 610, "limit": 10, "ceiling_candidates": 300,
    }))  # fmt: skip
    results.add(Figure("recommendations_rps", "s", 1.0, "req/s", details={
        "wrk": {"threads": 2, "connections": 8, "seconds": 5, "cpu_share": 0.31},
    }))  # fmt: skip
    text = docs.docs_markdown(results, [])
    assert "open loop at 123 req/s" in text
    assert "it used 7% of a core" in text
    assert "2 threads, 8 keep-alive connections, 5 s" in text
    assert "wrk used 31% of a core" in text
    assert "**search**" not in text  # no search figure in this run: no method for it
