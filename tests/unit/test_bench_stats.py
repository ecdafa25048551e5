"""The benchmark's arithmetic and its verdicts (pure functions; the benchmark itself is
not a test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.results import Figure, Results, Target
from bench.run import select_phases
from bench.stats import growth_exponent, percentile, rate, summarize


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear_interpolation(q: float) -> None:
    values = [float(v) for v in np.random.default_rng(1).exponential(5.0, size=257)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_one_value_and_bad_input() -> None:
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_summarize() -> None:
    summary = summarize([float(v) for v in range(1, 101)])
    assert summary["count"] == 100
    assert summary["mean"] == pytest.approx(50.5)
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p99"] == pytest.approx(99.01)
    assert summary["max"] == 100
    assert summarize([]) == {"count": 0}


def test_growth_exponent() -> None:
    sizes = [1_000, 10_000, 100_000]
    assert growth_exponent(sizes, [2.0, 20.0, 200.0]) == pytest.approx(1.0)
    assert growth_exponent(sizes, [5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert growth_exponent(sizes, [1.0, math.sqrt(10), 10.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="two"):
        growth_exponent([1_000], [1.0])
    with pytest.raises(ValueError, match="differ"):
        growth_exponent([1_000, 1_000], [1.0, 2.0])


def test_rate() -> None:
    assert rate(100, 4) == 25
    assert rate(100, 0) == 0


@pytest.mark.parametrize(
    ("target", "measured", "raw", "met"),
    [
        (Target("at_least", 15_000, ""), 16_000.0, None, True),
        (Target("at_least", 15_000, ""), 14_999.0, None, False),
        (Target("at_most", 10.0, ""), 10.0, 2.0, True),
        (Target("at_most", 10.0, ""), 10.5, 2.0, False),
        (Target("below", 1.0, ""), 1.0, None, False),
        (Target("ratio_at_least", 0.9, ""), 90.0, 100.0, True),
        (Target("ratio_at_least", 0.9, ""), 89.0, 100.0, False),
        (Target("ratio_at_least", 0.9, ""), 89.0, None, None),
        (Target("at_least", 1.0, ""), None, None, None),
    ],
)
def test_figure_verdicts(
    target: Target, measured: float | None, raw: float | None, met: bool | None
) -> None:
    figure = Figure("k", "title", measured, "x", target=target, raw=raw)
    assert figure.met is met


def test_results_keep_one_figure_per_key() -> None:
    results = Results("2025-01-01", "bench", False, {}, [])
    results.add(Figure("a", "first", 1.0, "x"))
    results.add(Figure("a", "again", 2.0, "x"))
    assert [f.title for f in results.figures] == ["again"]
    assert results.to_json()["figures"][0]["ratio"] is None


def test_select_phases() -> None:
    assert select_phases([]) == ("embedder", "usermodel", "ingest", "query", "freshness")
    assert select_phases(["freshness", "memory", "rps"]) == ("usermodel", "query", "freshness")
    with pytest.raises(ValueError, match="unknown"):
        select_phases(["nonsense"])


def test_results_round_trip_through_json() -> None:
    results = Results("2025-01-01", "bench", True, {"cpu": "x"}, [0.1], duration_s=3.0)
    results.add(Figure("a", "A", 1.5, "ms", Target("at_most", 2.0, "<= 2"), raw=1.0,
                       details={"n": 1}, profile={"samples": 3}))  # fmt: skip
    results.series["s"] = [1, 2]
    again = Results.from_json(results.to_json())
    assert again.to_json() == results.to_json()
    assert again.figures[0].met is True
