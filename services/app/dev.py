"""``attune dev``: the embedded stack, all four services in one process, a data set
loaded, example requests printed, served until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from schemas.content import ContentUpsert
from schemas.events import BehaviourEvent
from services.app.bootstrap import (
    SERVICES,
    Dependencies,
    assemble,
    serve_http,
    wait_for_shutdown_signal,
)
from services.app.embedded import EmbeddedStack
from services.common.settings import Settings


async def load_dataset(
    deps: Dependencies,
    console: Console,
    items: Sequence[ContentUpsert],
    events: Sequence[BehaviourEvent],
) -> None:
    """Produce the items and events to Kafka, then wait until the consumers applied them."""
    from services.app.datasets import produce, rich_progress, wait_with_progress
    from services.usermodel.subscriber import events_folded_total

    assert deps.vector_index is not None
    tenant = items[0].tenant if items else deps.settings.default_tenant
    indexed_before = await deps.vector_index.count(tenant)
    folded_before = events_folded_total()
    with rich_progress("content -> Kafka", console=console) as progress:
        await produce(deps.settings, items, progress=progress)
    with rich_progress("events -> Kafka", console=console) as progress:
        await produce(deps.settings, events, progress=progress)

    async def indexed() -> int:
        assert deps.vector_index is not None
        return await deps.vector_index.count(tenant) - indexed_before

    async def folded() -> float:
        return events_folded_total() - folded_before

    for label, total, done_now, deadline_s in (
        ("embedding items", len(items), indexed, 900),
        ("folding events", len(events), folded, 300),
    ):
        done = await wait_with_progress(label, total, done_now, deadline_s, console=console)
        if done < total:
            console.print(f"[yellow]{label}: {done}/{total} after {deadline_s} s[/yellow]")
    await deps.vector_index.optimize()


def example_requests(base_url: str, tenant: str, users: Sequence[tuple[str, str]], query: str,
                     item_id: str) -> list[str]:  # fmt: skip
    header = f"-H 'X-Attune-Tenant: {tenant}'"
    lines = [f"# {summary}\ncurl -s {header} '{base_url}/v1/users/{user}/recommendations?limit=5'"
             for user, summary in users]  # fmt: skip
    lines += [
        f"curl -s {header} '{base_url}/v1/users/{users[0][0]}'",
        f"curl -s {header} -H 'Content-Type: application/json' '{base_url}/v1/search' "
        f'-d \'{{"query": "{query}", "user_id": "{users[0][0]}", "limit": 5}}\'',
        f"curl -s {header} '{base_url}/v1/items/{item_id}/similar?limit=5'",
        f"curl -s {header} '{base_url}/v1/trending?limit=5'",
        f"curl -s {header} -H 'Content-Type: application/json' '{base_url}/v1/events' -d "
        f'\'{{"events": [{{"event": "like", "userId": "{users[0][0]}", '
        f'"messageId": "demo-1", "properties": {{"item_id": "{item_id}"}}}}]}}\'',
        f"open {base_url}/docs   # OpenAPI",
    ]
    return lines


async def run_dev(
    base: Settings,
    *,
    data_dir: Path,
    port: int,
    movielens: Path | None,
    console: Console,
) -> None:
    from services.app import datasets

    started = time.monotonic()
    if movielens is not None:
        tenant = datasets.MOVIELENS_TENANT
        items = datasets.movielens_items(movielens, tenant=tenant)
        events = list(datasets.movielens_events(movielens, tenant=tenant))
        users = [("1", "MovieLens user 1"), ("414", "MovieLens user 414 (many ratings)")]
        query, similar_to = "a heist that goes wrong", items[0].item_id
    else:
        tenant = datasets.DEMO_TENANT
        items = datasets.demo_items(tenant)
        events = datasets.demo_events(datetime.now(UTC), tenant)
        users = [(u.user_id, u.summary) for u in datasets.DEMO_USERS[:3]]
        users.append((datasets.DEMO_COLD_START_USER, "no history: trending"))
        query, similar_to = datasets.DEMO_USERS[0].example_query, items[0].item_id

    shutdown = asyncio.create_task(wait_for_shutdown_signal())
    async with EmbeddedStack(data_dir) as stack:
        settings = stack.settings(base).model_copy(
            update={"http_port": port, "default_tenant": tenant}
        )
        async with (
            assemble(settings, SERVICES, name="attune") as assembly,
            serve_http(assembly.app, settings.http_host, port),
        ):
            base_url = f"http://{settings.http_host}:{port}"
            console.print(f"[bold green]Attune[/bold green] on {base_url} (docs: /docs)")
            console.print(f"  Kafka {stack.kafka_bootstrap}   Redis {stack.redis_url}")
            console.print(f"  Qdrant Edge {stack.vector_index_path}   logs {stack.log_dir}")
            loading = asyncio.create_task(load_dataset(assembly.deps, console, items, events))
            await asyncio.wait({loading, shutdown}, return_when=asyncio.FIRST_COMPLETED)
            if not shutdown.done():
                loading.result()
                console.print(
                    f"[bold]Loaded {len(items)} items and {len(events)} events for "
                    f"tenant '{tenant}'; ready {time.monotonic() - started:.1f} s after "
                    "start.[/bold] Try:"
                )
                for line in example_requests(base_url, tenant, users, query, similar_to):
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
                console.print("Press Ctrl-C to stop.")
                await shutdown
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            console.print("stopping...")


__all__ = ["example_requests", "load_dataset", "run_dev"]
