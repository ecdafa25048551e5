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


def _attune_run(service: str, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """`attune run <service>` with only the given ATTUNE_* variables; one that starts
    serving instead of refusing is killed by the timeout (and the test fails)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_")}
    env |= {
        "ATTUNE_HTTP_PORT": str(free_port()),
        "ATTUNE_VECTOR_INDEX_PATH": str(tmp_path / "vectors"),
        **variables,
    }
    attune = Path(sys.executable).with_name("attune")
    return subprocess.run(
        [str(attune), "run", service], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("service", "variable"), [("query", "ATTUNE_READ_KEYS"), ("ingest", "ATTUNE_WRITE_KEYS")]
)
def test_an_api_on_a_public_address_without_keys_does_not_start(
    tmp_path: Path, service: str, variable: str
) -> None:
    result = _attune_run(service, tmp_path, ATTUNE_HTTP_HOST="0.0.0.0")
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert f"refusing to serve the {service} API without keys on 0.0.0.0" in message
    assert variable in message
    assert "ATTUNE_ALLOW_OPEN=true" in message


def test_a_placeholder_key_does_not_start(tmp_path: Path) -> None:
    result = _attune_run(
        "ingest",
        tmp_path,
        ATTUNE_HTTP_HOST="0.0.0.0",
        ATTUNE_WRITE_KEYS='{"change-me-tenant": ["CHANGE-ME-write-key"]}',
    )
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "ATTUNE_WRITE_KEYS" in message
    assert "placeholder" in message
    assert "CHANGE-ME-write-key" not in message
