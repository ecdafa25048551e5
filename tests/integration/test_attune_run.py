"""`attune run <service>`: each service alone, configured by the environment, answers
/healthz and /readyz with its dependencies reachable, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from services.app.embedded import EmbeddedStack, free_port
from tests.polling import wait_ready

pytestmark = pytest.mark.integration

EXPECTED_CHECKS = {
    "ingest": {"kafka"},
    "embedder": {"kafka", "vector_index"},
    "usermodel": {"kafka", "redis"},
    "query": {"redis", "vector_index"},
}


@pytest.mark.parametrize("service", sorted(EXPECTED_CHECKS))
def test_attune_run_serves_health_and_stops_on_sigterm(
    stack: EmbeddedStack, tmp_path: Path, service: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ATTUNE_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "ATTUNE_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "ATTUNE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "ATTUNE_KAFKA_GROUP_PREFIX": f"run-{uuid.uuid4().hex[:6]}",
        "ATTUNE_REDIS_URL": stack.redis_url,
        "ATTUNE_VECTOR_INDEX_PATH": str(tmp_path / "vectors"),
        "ATTUNE_HTTP_PORT": str(port),
    }
    attune = Path(sys.executable).with_name("attune")
    log = (tmp_path / "run.log").open("w")
    process = subprocess.Popen(
        [str(attune), "run", service], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def alive() -> str | None:
            return None if process.poll() is None else (tmp_path / "run.log").read_text()

        ready = wait_ready(f"http://127.0.0.1:{port}", alive)
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"]) == EXPECTED_CHECKS[service]
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.json()["status"] == "ok"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert "attune_http_request_duration_seconds" in metrics.text

        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, (tmp_path / "run.log").read_text()
    finally:
        process.kill()
        process.wait()
        log.close()


def test_an_unknown_service_is_refused() -> None:
    attune = Path(sys.executable).with_name("attune")
    result = subprocess.run([str(attune), "run", "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "'nope' is not one of" in " ".join(result.stderr.split())
