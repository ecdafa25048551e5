"""Feed the system and wait for it: produce events, wait until every consumer folded
them, and check the user model holds exactly what came before a cut-off."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from rich.console import Console

from bench.relevance.phases import Row
from services.app.bootstrap import Dependencies
from services.app.datasets import Rating, produce, rich_progress, wait_with_progress
from services.query.engine import QueryEngine
from services.usermodel.subscriber import events_folded_total


async def load_events(
    deps: Dependencies, console: Console, events: Sequence[Any], label: str, timeout_s: float,
    *, consumers: int = 1,
) -> None:  # fmt: skip
    """Produce events and wait until each of the running user-model ``consumers`` folded
    all of them."""
    before = events_folded_total()
    with rich_progress(f"{label} -> Kafka", console=console) as progress:
        await produce(deps.settings, events, progress=progress)

    async def folded() -> float:
        return events_folded_total() - before

    await wait_for_all(f"folding {label}", len(events) * consumers, folded, timeout_s, console)


async def wait_for_all(
    label: str, total: int, done_now: Callable[[], Awaitable[float]], timeout_s: float,
    console: Console,
) -> None:  # fmt: skip
    """Show a bar until ``done_now()`` reaches ``total``; raise after ``timeout_s``."""
    done = await wait_with_progress(label, total, done_now, timeout_s, console=console)
    if done < total:
        raise TimeoutError(f"{label}: only {done} of {total} after {timeout_s:.0f} s")


async def check_folded(
    engine: QueryEngine, tenant: str, ratings: Sequence[Rating], cutoff: int, rows: Sequence[Row]
) -> None:
    """The user model holds exactly the events before ``cutoff`` for these users."""
    expected = Counter(r.user_id for r in ratings if r.timestamp < cutoff)
    await check_counts(engine, tenant, expected, rows, "those before the cut-off")


async def check_counts(
    engine: QueryEngine, tenant: str, expected: Mapping[str, int], rows: Sequence[Row],
    which: str,
) -> None:  # fmt: skip
    """The user model folded ``expected[user]`` events for each row's user."""
    for row in rows:
        model = await engine.reader.user(tenant, row.user_id, recent_limit=1)
        if model.events != expected.get(row.user_id, 0):
            raise RuntimeError(
                f"user {row.user_id}: the user model folded {model.events} events, "
                f"expected {expected.get(row.user_id, 0)} ({which})"
            )


def events_between(
    events: Sequence[Any], ratings: Sequence[Rating], start: int | None, end: int | None
) -> list[Any]:
    return [
        e
        for e, r in zip(events, ratings, strict=True)
        if (start is None or r.timestamp >= start) and (end is None or r.timestamp < end)
    ]


__all__ = ["check_counts", "check_folded", "events_between", "load_events", "wait_for_all"]
