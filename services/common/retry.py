"""Waiting out a dependency outage (Redis, the vector index): retry with capped
exponential backoff, and show the outage in ``attune_dependency_up``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from services.common.metrics import set_dependency_up

log = logging.getLogger(__name__)

R = TypeVar("R")


async def retry_through_outage(
    operation: Callable[[], Awaitable[R]],
    is_outage: Callable[[BaseException], bool],
    *,
    max_wait_s: float = 10.0,
    dependency: str | None = None,
) -> R:
    """Run ``operation`` until it succeeds, backing off exponentially (capped) on the
    errors ``is_outage`` accepts: a dependency outage pauses the consumer, it never
    drops a batch. Any other error propagates. ``dependency`` names what an outage is
    of, for the ``attune_dependency_up`` gauge."""

    def before_sleep(state: RetryCallState) -> None:
        if dependency is not None:
            set_dependency_up(dependency, False)
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        log.warning(
            "dependency unavailable (%s); retry %d in %.1f s", error, state.attempt_number, wait
        )

    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_outage),
        wait=wait_exponential(multiplier=0.1, max=max_wait_s),
        before_sleep=before_sleep,
        reraise=True,
    ):
        with attempt:
            result = await operation()
            if dependency is not None:
                set_dependency_up(dependency, True)
            return result
    raise AssertionError("unreachable")  # pragma: no cover


def never(error: BaseException) -> bool:
    """For a store that waits out its own outages: no error is one."""
    return False


__all__ = ["never", "retry_through_outage"]
