"""Waiting in tests without fixed sleeps: poll a check until it holds or a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest


async def eventually(
    check: Callable[[], Awaitable[Any]],
    what: str,
    *,
    within: float = 60,
    interval: float = 0.1,
    tolerate: tuple[type[BaseException], ...] = (),
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy and return that; fail the test
    after ``within`` seconds, naming ``what`` (and ``explain()``, e.g. the services' logs).
    ``tolerate``: errors that mean "not yet" (a dependency still coming back)."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = await check()
        except tolerate:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {within:.0f} s waiting for: {what}{detail}")
        await asyncio.sleep(interval)


def wait_ready(url: str, alive: Callable[[], str | None], *, within: float = 60) -> httpx.Response:
    """Poll ``url``/readyz of a service process until it answers 200, and return that
    answer; fail when ``alive()`` says why the process is gone (its log), or after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if (gone := alive()) is not None:
            pytest.fail(f"the service at {url} exited:\n{gone}")
        try:
            answer = httpx.get(f"{url}/readyz", timeout=5)
            if answer.status_code == 200:
                return answer
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            pytest.fail(f"the service at {url} was not ready within {within:.0f} s")
        time.sleep(0.2)


__all__ = ["eventually", "wait_ready"]
