"""The operations guide and the deploy README name only real variables and commands,
and cover what an operator needs."""

from __future__ import annotations

import re

import pytest

from services.app.names import SERVICES
from services.common.settings import ENV_PREFIX, Settings
from tests.deploy.files import ROOT

DOCS = [ROOT / "docs" / "operations.md", ROOT / "deploy" / "README.md"]
_VARIABLE = re.compile(r"\bATTUNE_[A-Z0-9_]*[A-Z0-9]\b")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_variable_named_is_a_setting(path) -> None:
    fields = set(Settings.model_fields)
    named = set(_VARIABLE.findall(path.read_text()))
    assert named
    unknown = sorted(v for v in named if v.removeprefix(ENV_PREFIX).lower() not in fields)
    assert not unknown, f"{path.name} names unknown variables: {unknown}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_attune_run_names_a_service(path) -> None:
    for service in re.findall(r"attune run (\w+)", path.read_text()):
        assert service in SERVICES


def test_the_operations_guide_covers_scaling_backups_upgrades_and_managed_services() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    for needle in [
        "## How it scales",
        "## Capacity",
        "## Backups",
        "## Upgrades",
        "## Running on managed services",
        "docs/benchmarks.md",
        "partitions",
        "hash tag",
        "alias",
        "snapshot",
        "AOF",
        "attune replay usermodel",
        "attune replay embedder",
        "attune replay all",
        "attune state digest",
        "ATTUNE_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        "ATTUNE_KAFKA_SASL_MECHANISM",
        "ATTUNE_KAFKA_SASL_USERNAME",
        "ATTUNE_KAFKA_SASL_PASSWORD",
        "ATTUNE_QDRANT_URL=https://",
        "ATTUNE_QDRANT_API_KEY",
        "ATTUNE_REDIS_URL=rediss://",
    ]:
        assert needle in text, needle


def test_the_architecture_page_names_only_real_paths() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:services|bench|schemas)/[\w/.]*)`", text))
    assert len(named) > 20
    missing = sorted(path for path in named if "<name>" not in path and not (ROOT / path).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"
