"""schemathesis against the ingest and query services as they run (`attune run`, on the
real broker, Redis, Qdrant Edge and model): no input makes a 5xx, every 4xx has the
one error shape, and responses match the published OpenAPI schema."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given

from services.app.embedded import EmbeddedStack, free_port
from tests.fuzzing import CHECKS, fuzz_settings
from tests.polling import wait_ready

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 60


def _serve(service: str, stack: EmbeddedStack, folder: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "ATTUNE_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "ATTUNE_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "ATTUNE_REDIS_URL": stack.redis_url,
        "ATTUNE_VECTOR_INDEX_PATH": str(folder / "vectors"),
        "ATTUNE_HTTP_PORT": str(port),
        "ATTUNE_MAX_BODY_BYTES": "65536",
    }
    attune = Path(sys.executable).with_name("attune")
    log_path = folder / f"{service}.log"
    log = log_path.open("wb")
    process = subprocess.Popen([str(attune), "run", service], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, lambda: None if process.poll() is None else log_path.read_text())
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def ingest_schema(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    for url in _serve("ingest", stack, tmp_path_factory.mktemp("ingest")):
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


@pytest.fixture(scope="module")
def query_schema(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    for url in _serve("query", stack, tmp_path_factory.mktemp("query")):
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


FUZZ = fuzz_settings(EXAMPLES_PER_OPERATION)


def fuzz_every_operation(schema: Any) -> int:
    """Run the checks on generated requests for every operation of ``schema``."""
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @FUZZ
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        call()
    return operations


def test_ingest_api(ingest_schema: Any) -> None:
    assert fuzz_every_operation(ingest_schema) >= 9


def test_query_api(query_schema: Any) -> None:
    assert fuzz_every_operation(query_schema) >= 8
