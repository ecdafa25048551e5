"""A benchmark figure with any failure is not met, and the table counts the failures:
non-2xx answers and timeouts (warm-up included), freshness probes never visible, a
replay whose digest differs from the live fold's."""

from __future__ import annotations

import asyncio
from typing import Any

from bench import report
from bench.freshness import TARGET as FRESHNESS_TARGET
from bench.freshness import freshness_failures
from bench.httpclient import failures
from bench.loadgen import run
from bench.query_figures import RECS_TARGET
from bench.results import Figure, Results
from bench.usermodel import replay_verdict
from services.common.replay import ReadStats


def _results(*figures: Figure) -> Results:
    results = Results("2025-01-01 12:00 UTC", "python -m bench", True, {}, [])
    for figure in figures:
        results.add(figure)
    return results


def test_one_non_2xx_answer_makes_a_fast_figure_not_met_and_is_counted() -> None:
    answers = {"statuses": {"200": 3_999, "503": 1}, "errors": {}, "warmup_statuses": {},
               "warmup_errors": {}}  # fmt: skip
    figure = Figure("recommendations", "recs", 2.0, "ms", RECS_TARGET, failures=failures(answers))
    assert figure.failures == {"503": 1}
    assert figure.met is False
    (row,) = report.rows(_results(figure))
    assert row[report.HEADER.index("failed")] == "1 (503: 1)"
    assert row[-1] == "NO"
    assert "| 1 (503: 1) |" in report.markdown_table(_results(figure))


def test_a_timeout_during_the_warm_up_counts_too() -> None:
    answers = {"statuses": {"202": 50}, "errors": {}, "warmup_statuses": {"202": 19},
               "warmup_errors": {"TimeoutError": 1}}  # fmt: skip
    assert failures(answers) == {"TimeoutError": 1}
    clean = {"statuses": {"200": 5, "204": 1}, "errors": {}}
    assert failures(clean) == {}
    assert Figure("x", "x", 2.0, "ms", RECS_TARGET, failures=failures(clean)).met is True


async def test_the_load_generator_reports_failed_answers_of_the_warm_up() -> None:
    answered = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            status = b"500 Internal Server Error" if answered == 0 else b"200 OK"
            answered += 1
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await run({
            "mode": "closed", "host": "127.0.0.1", "port": port,
            "requests": [{"method": "GET", "path": "/x"}], "concurrency": 1, "warmup": 2,
            "max_requests": 5, "max_seconds": 10,
        })  # fmt: skip
    assert result["statuses"] == {"200": 5}
    assert failures(result) == {"500": 1}


def _probe(visible_ms: float | None, **extra: Any) -> dict[str, Any]:
    probe: dict[str, Any] = {"post_ms": 3.0, "post_status": 202, "polls": 4, **extra}
    if visible_ms is not None:
        probe["visible_ms"] = visible_ms
    return probe


def test_a_freshness_probe_never_visible_is_a_failure() -> None:
    probes = [_probe(80.0), _probe(90.0), _probe(None)]
    load = {"statuses": {"202": 100}, "errors": {}}
    found = freshness_failures(probes, load)
    assert found == {"probe never visible": 1}
    # The visible probes alone would meet the target: the one that never was decides.
    figure = Figure("freshness", "f", 90.0, "ms", FRESHNESS_TARGET, failures=found)
    assert FRESHNESS_TARGET.met(90.0, None) is True
    assert figure.met is False
    assert report.fmt_met(figure.met) == "NO"


def test_freshness_counts_errors_failed_posts_polls_and_background() -> None:
    probes = [
        _probe(None, error="TimeoutError: "),
        _probe(None, post_status=503),
        _probe(50.0, poll_statuses={"500": 2}),
    ]
    load = {"statuses": {"202": 90, "503": 3}, "errors": {"HttpError": 1}}
    assert freshness_failures(probes, load) == {
        "probe TimeoutError": 1,
        "probe POST 503": 1,
        "poll 500": 2,
        "background 503": 3,
        "background HttpError": 1,
    }
    assert freshness_failures([_probe(50.0)], {"statuses": {"202": 9}, "errors": {}}) == {}


def test_a_replay_digest_mismatch_reads_no() -> None:
    stats = ReadStats(records=100_000, seconds=2.0)  # 50,000 events/s: fast enough
    differs = replay_verdict(stats, 0, "a" * 64, "b" * 64, 20_000.0, digest_lines=10)
    assert differs.measured == 50_000.0
    assert differs.met is False
    (row,) = report.rows(_results(differs))
    assert row[-1] == "NO"
    assert row[report.HEADER.index("failed")].startswith("1 (digest differs")
    same = replay_verdict(stats, 0, "a" * 64, "a" * 64, 20_000.0, digest_lines=10)
    assert same.met is True
