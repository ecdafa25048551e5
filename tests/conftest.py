"""Fixtures shared by every test level.

The embedded stack (a real Tansu broker, a private redis-server on a free port and a
Qdrant Edge folder) is started once per session and stopped at the end, also when
tests fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.app.embedded import EmbeddedStack
from services.common.settings import Settings


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedStack]:
    async with EmbeddedStack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="session")
def stack_settings(stack: EmbeddedStack) -> Settings:
    return stack.settings(Settings())


@pytest.fixture
def tmp_data(tmp_path: Path) -> Path:
    return tmp_path
