"""The evaluated users of a held-out period and what each method answered them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.relevance.split import Holdout
from schemas.query import Signal
from services.query.candidates import Candidates
from services.query.engine import QueryEngine

LIST_LENGTH = 20
"""How long a list each method gives (Recall@20 and MRR@20 read all of it)."""


@dataclass(frozen=True)
class Row:
    """One evaluated user in one held-out period."""

    user_id: str
    period: str
    cutoff: int
    history: frozenset[str]
    targets: frozenset[str]

    @property
    def has_history(self) -> bool:
        return bool(self.history)


def rows_of(period: str, held_out: Holdout) -> list[Row]:
    return [
        Row(u, period, held_out.cutoff, held_out.history.get(u, frozenset()), held_out.targets[u])
        for u in held_out.users
    ]


@dataclass
class Phase:
    """The rows of one role (validation: every window pooled; test) and every method's
    lists and per-row metrics."""

    name: str
    rows: list[Row] = field(default_factory=list)
    candidates: list[Candidates] = field(default_factory=list)
    lists: dict[str, list[list[str]]] = field(default_factory=dict)
    per_user: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def where(self, keep: Callable[[Row], bool]) -> list[int]:
        return [n for n, row in enumerate(self.rows) if keep(row)]

    @property
    def periods(self) -> list[str]:
        return list(dict.fromkeys(row.period for row in self.rows))


async def engine_lists(
    engine: QueryEngine, phase: Phase, weights: Mapping[Signal, float], diversity: float
) -> list[list[str]]:
    """The engine's list for every row of the phase, under ``weights``, from the
    candidates gathered for it (``GET /v1/users/{id}/recommendations`` ranks the same)."""
    lists = []
    for candidates in phase.candidates:
        _, results = await engine.rank(
            candidates, limit=LIST_LENGTH, weights=weights, diversity=diversity
        )
        lists.append([r.item_id for r in results])
    return lists


@contextmanager
def progress_bar(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


class Laps:
    """A stopwatch for a run's phases: ``lap(name)`` records the seconds since the
    previous lap (or the start); ``seconds`` is the whole run so far."""

    def __init__(self) -> None:
        self.started = self._mark = time.monotonic()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.timings[name] = round(now - self._mark, 1)
        self._mark = now

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 1)


__all__ = ["LIST_LENGTH", "Laps", "Phase", "Row", "engine_lists", "progress_bar", "rows_of"]
