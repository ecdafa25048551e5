"""The demo as `attune dev` serves it: all four services in this process on the session's
embedded stack (own consumer groups, Redis namespace and vector folder), the demo data
set loaded through Kafka once for the e2e tests that read it, its tenant the default."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from rich.console import Console

from schemas.content import ContentUpsert
from schemas.events import BehaviourEvent
from services.app import datasets
from services.app.bootstrap import SERVICES, assemble, serve_http
from services.app.dev import load_dataset
from services.app.embedded import EmbeddedStack, free_port
from tests.polling import eventually


@dataclass(frozen=True)
class Demo:
    url: str
    tenant: str
    items: list[ContentUpsert]
    events: list[BehaviourEvent]

    @property
    def item_ids(self) -> set[str]:
        return {item.item_id for item in self.items}

    @property
    def user_ids(self) -> set[str]:
        return {event.user_id for event in self.events}


@pytest.fixture(scope="package")
async def demo(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Demo]:
    run = uuid.uuid4().hex[:8]
    settings = stack.settings().model_copy(
        update={
            "kafka_group_prefix": f"demo-{run}",
            "redis_namespace": f"demo-{run}",
            "vector_index_path": tmp_path_factory.mktemp("demo") / "vectors",
            "default_tenant": datasets.DEMO_TENANT,
        }
    )
    items = datasets.demo_items()
    events = datasets.demo_events(datetime.now(UTC))
    port = free_port()
    async with (
        assemble(settings, SERVICES, name="attune") as assembly,
        serve_http(assembly.app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        await load_dataset(assembly.deps, Console(quiet=True), items, events)
        # load_dataset counts folds of every tenant; wait for each demo user's own count.
        per_user = Counter(event.user_id for event in events)

        async def folded() -> bool:
            for user, count in per_user.items():
                found = await client.get(f"/v1/users/{user}")
                body: dict[str, Any] = found.json()
                if found.status_code != 200 or body["events"] < count:
                    return False
            return True

        await eventually(folded, "every demo user's events are folded", within=120)
        yield Demo(f"http://127.0.0.1:{port}", datasets.DEMO_TENANT, items, events)
