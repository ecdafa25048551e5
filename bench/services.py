"""The services under test: real ``attune run <service>`` subprocesses, their /metrics,
and the load generator subprocess.

Each service runs as in production: its own process, configured by ``ATTUNE_*``
variables, one uvicorn server on one event loop. The benchmark points them at its
embedded stack and at a vector-index folder of its choosing (Qdrant Edge locks its
folder, so the benchmark never holds a folder a service has open).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from services.app.embedded import ManagedProcess, StackError, free_port
from services.common.settings import ENV_PREFIX, Settings

ServiceName = str


def _env_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(_revealed(value))
    return str(value)


def _revealed(value: Any) -> Any:
    """``value`` with its secrets as plain strings, for JSON."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revealed(v) for v in value]
    return value


def settings_env(settings: Settings) -> dict[str, str]:
    """``ATTUNE_*`` variables that make a child process read exactly ``settings``, over
    the parent's environment minus its own ``ATTUNE_*`` and ``OTEL_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((ENV_PREFIX, "OTEL_"))}
    for name in type(settings).model_fields:
        value = _env_value(getattr(settings, name))
        if value is not None:
            env[ENV_PREFIX + name.upper()] = value
    return env


@dataclass
class Service:
    """A running ``attune run <name>``."""

    name: ServiceName
    port: int
    process: ManagedProcess

    @property
    def pid(self) -> int:
        return self.process.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def metrics(self, client: httpx.AsyncClient) -> list[Sample]:
        response = await client.get(f"{self.url}/metrics", timeout=5.0)
        response.raise_for_status()
        return parse_metrics(response.text)

    def stop(self) -> None:
        self.process.stop(timeout=15.0)


async def start_service(
    name: ServiceName, settings: Settings, log_dir: Path, *, ready_timeout_s: float = 120.0
) -> Service:
    """Start ``attune run <name>`` on a free port and wait until /readyz answers 200."""
    port = free_port()
    env = settings_env(settings.model_copy(update={"http_host": "127.0.0.1", "http_port": port}))
    argv = [sys.executable, "-m", "services.cli", "run", name]
    return await start_process(
        f"attune run {name}", name, argv, env, port, log_dir, ready_timeout_s=ready_timeout_s
    )


async def start_process(
    title: str, name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path,
    *, ready_timeout_s: float = 120.0,
) -> Service:  # fmt: skip
    """Start ``argv`` (an HTTP server on ``port``) and wait until /readyz answers 200."""
    log_path = log_dir / f"{name}-{port}.log"
    service = Service(name, port, ManagedProcess.start(title, argv, log_path, env))
    deadline = time.monotonic() + ready_timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            if service.process.exited():
                raise StackError(
                    f"{title} exited with {service.process.process.returncode}:\n"
                    + service.process.last_log_lines()
                )
            try:
                response = await client.get(f"{service.url}/readyz", timeout=2.0)
                if response.status_code == 200:
                    return service
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                service.stop()
                raise StackError(f"{title} not ready after {ready_timeout_s:.0f} s")
            await asyncio.sleep(0.2)


# -- Prometheus text ------------------------------------------------------------------

Sample = tuple[str, dict[str, str], float]


def parse_metrics(text: str) -> list[Sample]:
    """(name, labels, value) of every sample in a Prometheus text exposition."""
    samples: list[Sample] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        labels: dict[str, str] = {}
        name = head
        if "{" in head:
            name, _, rest = head.partition("{")
            for part in _split_labels(rest.rstrip("}")):
                key, _, raw = part.partition("=")
                labels[key.strip()] = raw.strip().strip('"')
        try:
            samples.append((name, labels, float(value)))
        except ValueError:
            continue
    return samples


def _split_labels(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if current:
        parts.append("".join(current))
    return [p for p in parts if p.strip()]


def metric(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


# -- following a consumer ---------------------------------------------------------------


async def scrape(service: Service) -> list[Sample]:
    async with httpx.AsyncClient() as client:
        return await service.metrics(client)


async def wait_for_metric(
    service: Service,
    value: Callable[[list[Sample]], float],
    *,
    at_least: float = 1,
    deadline_s: float,
    interval_s: float = 0.1,
) -> float:
    """Scrape until ``value`` reaches ``at_least`` (or the deadline passes); return it."""
    deadline = time.monotonic() + deadline_s
    async with httpx.AsyncClient() as client:
        while True:
            current = value(await service.metrics(client))
            if current >= at_least or time.monotonic() > deadline:
                return current
            await asyncio.sleep(interval_s)


@dataclass
class ConsumerRun:
    """When a consumer started and finished a known amount of work (monotonic seconds),
    and how much of that work the interval covers from its start (``counted``)."""

    started: float
    finished: float
    done: float
    timed_out: bool
    counted: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def rate(self) -> float | None:
        """Work per second over the interval; None when no work was timed."""
        return self.counted / self.seconds if self.counted > 0 and self.seconds > 0 else None

    @property
    def failures(self) -> dict[str, int]:
        found = {}
        if self.timed_out:
            found["consumer timed out"] = 1
        if self.counted <= 0:
            found["no work timed"] = 1
        return found


class ConsumerClock:
    """Times a consumer from successive /metrics scrapes so that the interval covers all
    of the work it counts.

    Start: the last scrape where nothing had been read. When the very first scrape finds
    work already read, that work began before anyone looked: it is left out of the count
    and the clock starts at that scrape. End: the first scrape where the work is done."""

    def __init__(self, target: float, begin: float) -> None:
        self.target = target
        self.last_zero = begin
        self.started: float | None = None
        self.before = 0.0  # work read before the clock started (not counted)
        self.first = True

    def observe(self, now: float, read: float, done: float) -> ConsumerRun | None:
        """One scrape: ``read`` work taken up so far, ``done`` work finished; the run once
        ``done`` reaches the target."""
        if self.started is None:
            if read > 0:
                self.started = now if self.first else self.last_zero
                self.before = read if self.first else 0.0
            else:
                self.last_zero = now
        self.first = False
        if done >= self.target and self.started is not None:
            return ConsumerRun(self.started, now, done, False, done - self.before)
        return None

    def give_up(self, now: float, done: float) -> ConsumerRun:
        started = self.started if self.started is not None else now
        return ConsumerRun(started, now, done, True, max(0.0, done - self.before))


async def follow_consumer(
    service: Service,
    *,
    started_metric: Callable[[list[Sample]], float],
    done_metric: Callable[[list[Sample]], float],
    target: float,
    deadline_s: float,
    progress: Callable[[int, int | None], None] | None = None,
    interval_s: float = 0.05,
) -> ConsumerRun:
    """Scrape /metrics every ``interval_s`` until ``done_metric`` reaches ``target``;
    :class:`ConsumerClock` turns the scrapes into a run."""
    begin = time.monotonic()
    clock = ConsumerClock(target, begin)
    async with httpx.AsyncClient() as client:
        while True:
            now = time.monotonic()
            samples = await service.metrics(client)
            done = done_metric(samples)
            if progress is not None:
                progress(int(min(done, target)), int(target))
            finished = clock.observe(now, started_metric(samples), done)
            if finished is not None:
                return finished
            if now - begin > deadline_s:
                return clock.give_up(now, done)
            if service.process.exited():
                raise StackError(
                    f"{service.process.name} exited:\n" + service.process.last_log_lines()
                )
            await asyncio.sleep(interval_s)


# -- the load generator -----------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def run_loadgen(spec: Mapping[str, Any], *, timeout_s: float) -> dict[str, Any]:
    """Run ``python -m bench.loadgen`` on ``spec`` and return its results."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, preexec_fn=_die_with_parent,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(
            process.communicate(json.dumps({**spec, "hard_limit_s": timeout_s}).encode()),
            timeout_s + 30,
        )
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode}): {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


__all__ = [
    "ConsumerClock",
    "ConsumerRun",
    "Sample",
    "Service",
    "follow_consumer",
    "metric",
    "parse_metrics",
    "run_loadgen",
    "scrape",
    "settings_env",
    "start_process",
    "start_service",
    "wait_for_metric",
]
