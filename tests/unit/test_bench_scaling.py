"""The scaling figure: real films with their own vectors, and a target that can fail."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from bench import report
from bench.context import QUICK, Context
from bench.embedder import ensure_vectors
from bench.query import scaling_figure
from bench.results import Results
from bench.workloads import MovieLens
from schemas.content import ContentUpsert
from services.common.settings import Settings


def _point(items: int, recs_p99: float, search_p99: float, **errors: dict[str, int]) -> dict:
    latency = {"p50": 1.0, "p90": 1.5}
    return {
        "items": items, "rps": 500.0,
        "recs": {**latency, "p99": recs_p99}, "search": {**latency, "p99": search_p99},
        "raw_search": {**latency, "p99": 1.0}, "raw_embed_search": {**latency, "p99": 1.0},
        "recs_errors": errors.get("recs", {}), "search_errors": {}, "rps_errors": {},
    }  # fmt: skip


def test_the_scaling_target_fails_when_p99_grows_too_much() -> None:
    # Twice the p99 at ten times the items: far from linear, but not what we promise.
    grows = scaling_figure([_point(1_000, 9.0, 5.0), _point(10_000, 10.0, 6.0),
                            _point(100_000, 20.0, 6.5)])  # fmt: skip
    assert grows.measured == 2.0
    assert grows.details["worst"] == "recommendations"
    assert grows.met is False
    flat = scaling_figure([_point(10_000, 10.0, 6.0), _point(100_000, 12.0, 7.0)])
    assert flat.measured is not None
    assert round(flat.measured, 3) == 1.2
    assert flat.met is True
    assert report.fmt_measured(flat) == "1.20x"


def test_the_scaling_figure_counts_failed_requests_at_every_size() -> None:
    failing = scaling_figure([_point(1_000, 10.0, 6.0, recs={"503": 2}),
                              _point(10_000, 10.0, 6.0)])  # fmt: skip
    assert failing.failures == {"503": 2}
    assert failing.met is False


class _Embedder:
    """Stands in for the model: a text's vector is derived from the text alone."""

    async def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.asarray([_vector(text) for text in texts], dtype=np.float32)


def _vector(text: str) -> list[float]:
    return [float(len(text)), float(sum(map(ord, text)) % 97), 1.0]


async def test_a_quick_run_searches_the_films_real_vectors(tmp_path: Path) -> None:
    items = [
        ContentUpsert(
            tenant="movielens",
            item_id=str(n),
            title=f"Film {n}" * (n + 1),
            updated_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
        for n in range(7)
    ]
    ctx = Context(
        sizes=QUICK, quick=True, console=Console(file=io.StringIO()), settings=Settings(),
        work=tmp_path, out=tmp_path / "out",
        results=Results("2025-01-01 12:00 UTC", "python -m bench", True, {}, []),
        data=MovieLens(tmp_path, items, []), run_id="t",
    )  # fmt: skip
    ctx._embedder = _Embedder()  # type: ignore[assignment]
    measured = await _Embedder().embed_documents(ctx.data.texts[:2])
    await ensure_vectors(ctx, measured=measured)
    assert ctx.vectors is not None
    assert ctx.vectors.tolist() == [_vector(text) for text in ctx.data.texts]
