"""The README's main job, as a user runs it: `attune dev` serves explained
recommendations for a demo user within 60 s, and Ctrl-C or SIGTERM stops it and
every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.app.embedded import free_port

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(line) for line in out.stdout.split()]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_attune_dev_serves_explained_recommendations_then_stops_cleanly(
    tmp_path: Path, signum: int
) -> None:
    port = free_port()
    attune = Path(sys.executable).with_name("attune")
    log = (tmp_path / "dev.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        [str(attune), "dev", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ATTUNE_LOG_LEVEL": "INFO"},
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/users/alice/recommendations?limit=5"
        body: dict[str, object] = {}
        while time.monotonic() - started < 60:
            assert process.poll() is None, (tmp_path / "dev.log").read_text()
            try:
                response = httpx.get(url, headers={"X-Attune-Tenant": "demo"}, timeout=5)
                body = response.json() if response.status_code == 200 else {}
            except httpx.HTTPError:
                body = {}
            if body.get("items"):
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        assert body.get("items"), (
            f"no recommendations after {elapsed:.0f} s:\n" + (tmp_path / "dev.log").read_text()
        )
        assert body["strategy"] == "personalized"
        assert all(item["reasons"] and item["title"] for item in body["items"])  # type: ignore[union-attr]

        children = _children(process.pid)
        assert len(children) == 2  # the broker and redis-server
        process.send_signal(signum)
        assert process.wait(30) == 0
        assert not any(_alive(pid) for pid in children)
    finally:
        process.kill()
        process.wait()
        log.close()
