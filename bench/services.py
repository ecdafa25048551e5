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
    log_path = log_dir / f"{name}-{port}.log"
    service = Service(name, port, ManagedProcess.start(f"attune run {name}", argv, log_path, env))
    deadline = time.monotonic() + ready_timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            if service.process.exited():
                raise StackError(
                    f"attune run {name} exited with {service.process.process.returncode}:\n"
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
                raise StackError(f"attune run {name} not ready after {ready_timeout_s:.0f} s")
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
    """When a consumer started and finished a known amount of work (monotonic seconds)."""

    started: float
    finished: float
    done: float
    timed_out: bool

    @property
    def seconds(self) -> float:
        return self.finished - self.started


async def follow_consumer(
    service: Service,
    *,
    started_metric: Callable[[list[Sample]], float],
    done_metric: Callable[[list[Sample]], float],
    target: float,
    deadline_s: float,
    progress: Callable[[int, int | None], None] | None = None,
    interval_s: float = 0.1,
) -> ConsumerRun:
    """Scrape /metrics every ``interval_s`` until ``done_metric`` reaches ``target``.

    Start: halfway between the last scrape where ``started_metric`` was 0 and the first
    where it was not; end: interpolated between the scrapes around ``target``, so that
    the scrape interval biases neither way."""
    begin = time.monotonic()
    last_zero = begin
    started: float | None = None
    previous: tuple[float, float] | None = None
    async with httpx.AsyncClient() as client:
        while True:
            now = time.monotonic()
            samples = await service.metrics(client)
            done = done_metric(samples)
            if started is None:
                if started_metric(samples) > 0:
                    started = (last_zero + now) / 2
                else:
                    last_zero = now
            if progress is not None:
                progress(int(min(done, target)), int(target))
            if done >= target:
                finished = now
                if previous is not None and done > previous[1]:
                    share = (target - previous[1]) / (done - previous[1])
                    finished = previous[0] + share * (now - previous[0])
                return ConsumerRun(started or begin, finished, done, False)
            if now - begin > deadline_s:
                return ConsumerRun(started or begin, now, done, True)
            if service.process.exited():
                raise StackError(
                    f"{service.process.name} exited:\n" + service.process.last_log_lines()
                )
            previous = (now, done)
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
    "ConsumerRun",
    "Sample",
    "Service",
    "follow_consumer",
    "metric",
    "parse_metrics",
    "run_loadgen",
    "scrape",
    "settings_env",
    "start_service",
    "wait_for_metric",
]
