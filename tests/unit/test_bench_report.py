"""Rendering of the benchmark's table, docs page, profiles and plots."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench import docs, report
from bench.profiles import flamegraph_svg, frame_label, parse_collapsed, summarize_stacks
from bench.results import Figure, Results, Target


def _results() -> Results:
    results = Results(
        started_at="2025-01-01 12:00 UTC",
        command="attune bench",
        quick=False,
        machine={
            "cpu": "Test CPU",
            "cores": 2,
            "memory_gb": 4.0,
            "os": "Linux",
            "kernel": "6",
            "python": "3.11",
            "redis_server": "7.0",
        },
        load_before=[0.1, 0.2, 0.3],
        load_after=[0.4, 0.5, 0.6],
        duration_s=600,
    )
    results.add(Figure("recommendations_rps", "requests/s", 800.0, "req/s",
                       Target("at_least", 1_000, ">= 1,000")))  # fmt: skip
    results.add(
        Figure(
            "embedder", "embedder docs/s", 95.0, "docs/s", Target("ratio_at_least", 0.9, ">= 0.9x"),
            raw=100.0, raw_label="fastembed alone",
        )
    )  # fmt: skip
    results.add(
        Figure(
            "recommendations", "recs latency", 12.5, "ms", Target("at_most", 10, "p99 <= 10 ms"),
            raw=2.5, raw_label="search alone",
            profile={"seconds": 10, "samples": 900, "flamegraph": "/x/profile-recs.svg",
                     "top_project": [["QueryEngine.recommendations (services/query/engine.py)",
                                      80.0]],
                     "top_self": [["cosine (services/query/ranking.py)", 20.0]]},
        )
    )  # fmt: skip
    results.series["scaling"] = [
        {"items": n, "rps": 900.0 - n / 1000,
         **{k: {"p50": 1.0, "p99": 2.0} for k in ("recs", "search", "raw_search",
                                                   "raw_embed_search")}}
        for n in (1_000, 10_000)
    ]  # fmt: skip
    results.series["latency_headline"] = {
        "items": 10_000, "recommendations": [1.0, 2.0, 3.0], "search": [4.0, 5.0],
        "raw_search": [0.5, 0.6], "raw_embed_search": [3.0, 3.5],
    }  # fmt: skip
    return results


def test_formatting() -> None:
    assert report.fmt_value(None, "ms") == "-"
    assert report.fmt_value(3.14159, "ms") == "3.1 ms"
    assert report.fmt_value(1234.5, "ms") == "1,234 ms"
    assert report.fmt_value(15234.2, "events/s") == "15,234 events/s"
    assert report.fmt_value(0.456, "exponent") == "0.46"
    assert report.fmt_value(312.4, "B") == "312 B"


def test_rows_follow_the_issue_order_with_verdicts() -> None:
    rows = report.rows(_results())
    assert [row[0] for row in rows] == ["embedder docs/s", "recs latency", "requests/s"]
    embedder, recs, rps = rows
    assert embedder[1:] == ["95 docs/s", "0", "100 docs/s", "0.95x", ">= 0.9x", "yes"]
    assert recs[1:] == ["p99 12.5 ms", "0", "2.5 ms", "5.0x", "p99 <= 10 ms", "NO"]
    assert rps[3:5] == ["-", "-"]
    assert rps[-1] == "NO"


def test_docs_page_has_machine_command_date_table_profiles_and_plots() -> None:
    text = docs.docs_markdown(_results(), ["scaling.png"])
    assert "`attune bench`" in text
    assert "2025-01-01 12:00 UTC" in text
    assert "Test CPU, 2 cores" in text
    assert "| embedder docs/s | 95 docs/s | 0 | 100 docs/s (fastembed alone) | 0.95x |" in text
    assert "**NO**" in text
    assert "## Profiles of the missed targets" in text
    assert "80.0% `QueryEngine.recommendations (services/query/engine.py)`" in text
    assert "![scaling.png](benchmarks/scaling.png)" in text
    assert "| 10,000 | 1.0 / 2.0 ms |" in text


def test_plots_and_docs_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = _results()
    paths = report.plots(results, tmp_path / "out")
    assert {p.name for p in paths} == {"throughput.png", "latency.png", "scaling.png"}
    assert all(p.stat().st_size > 1_000 for p in paths)
    stale = tmp_path / "docs" / "benchmarks" / "memory.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run's plot")
    page = docs.write_docs(results, tmp_path / "docs" / "benchmarks.md", paths)
    assert (tmp_path / "docs" / "benchmarks" / "scaling.png").exists()
    assert not stale.exists()
    assert "benchmarks/latency.png" in page.read_text()
    stored = json.loads((tmp_path / "docs" / "benchmarks.json").read_text())
    assert stored["plots"] == ["throughput.png", "latency.png", "scaling.png"]
    assert docs.docs_from_json(stored) == page.read_text()
    written = report.write_json(results, tmp_path / "out" / "latest.json")
    assert '"key": "recommendations"' in written.read_text()


COLLAPSED = """\
main (/repo/services/cli.py:10);handle (/repo/services/query/engine.py:5);cosine (/repo/services/query/ranking.py:7) 30
main (/repo/services/cli.py:10);handle (/repo/services/query/engine.py:6);dumps (/usr/lib/python3.11/json/__init__.py:231) 10
main (/repo/services/cli.py:10);select (/usr/lib/python3.11/selectors.py:468) 60
"""  # noqa: E501


def test_collapsed_stacks_are_summarized(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import profiles

    monkeypatch.setattr(profiles, "_REPO", "/repo/")
    assert frame_label("f (/usr/lib/python3.11/json/decoder.py:3)") == "f (json/decoder.py)"
    assert (
        frame_label("g (/x/.venv/lib/python3.11/site-packages/pydantic/main.py:9)")
        == "g (pydantic/main.py)"
    )
    stacks = parse_collapsed(COLLAPSED)
    assert sum(stacks.values()) == 100
    summary = summarize_stacks(stacks)
    assert summary.top_self[0] == ("select (selectors.py)", 60.0)
    # The process's entry point is left out; lines of one function are merged.
    assert summary.top_project[0] == ("handle (services/query/engine.py)", 40.0)
    assert ("cosine (services/query/ranking.py)", 30.0) in summary.top_project


def test_flamegraph_is_an_svg_with_every_frame() -> None:
    stacks: Counter[tuple[str, ...]] = Counter({("a (x.py)", "b (y.py)"): 3, ("a (x.py)",): 1})
    svg = flamegraph_svg(stacks, "title <test>")
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    assert "title &lt;test&gt;" in svg
    assert "b (y.py) (3 samples, 75.0%)" in svg
    assert "{y" not in svg


def test_the_scaling_table_says_when_wrk_could_not_run() -> None:
    results = _results()
    results.series["scaling"][0]["rps"] = None
    results.series["scaling"][0]["rps_errors"] = {"wrk not installed": 1}
    for point in results.series["scaling"]:
        point.update(recs_offered_per_s=200.0, search_offered_per_s=50.0)
    text = docs.docs_markdown(results, [])
    assert "| 1,000 | 1.0 / 2.0 ms | 1.0 / 2.0 ms | 1.0 / 2.0 ms | 1.0 / 2.0 ms | - | 1 |" in text
    assert "Recommendations at 200 req/s and search at 50 req/s offered (open loop" in text
