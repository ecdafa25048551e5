"""One trace per event, across the Kafka hop, on the real embedded stack: ingest, the
two consumers and the query API run in one process (as `attune dev` runs them) with an
in-memory span exporter installed; an event and a content item posted over HTTP each
give one trace from the HTTP request through the publish and the consumer's batch span
down to the store writes (Redis fold, embedding, vector index), and a search request
traces the query embedding, the vector search and the Redis reads.

The helpers at the top (span rows, trees, polling) are shared with the OTLP test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.app.bootstrap import SERVICES, assemble, serve_http
from services.app.embedded import EmbeddedStack, free_port
from services.common.telemetry import use_tracer_provider
from tests.polling import eventually

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SpanRow:
    """A finished span, whichever way it was captured (in memory, or decoded OTLP)."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    links: tuple[tuple[str, str], ...] = ()  # (trace_id, span_id)
    attributes: tuple[tuple[str, Any], ...] = ()

    def attribute(self, key: str) -> Any:
        return dict(self.attributes).get(key)


def from_sdk(spans: Iterable[Any]) -> list[SpanRow]:
    """Rows from SDK ReadableSpans (InMemorySpanExporter)."""
    rows = []
    for span in spans:
        context = span.get_span_context()
        parent = span.parent
        rows.append(
            SpanRow(
                service=str(span.resource.attributes.get("service.name", "?")),
                name=span.name,
                kind=span.kind.name,
                trace_id=f"{context.trace_id:032x}",
                span_id=f"{context.span_id:016x}",
                parent_id=f"{parent.span_id:016x}" if parent is not None else None,
                links=tuple(
                    (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}")
                    for link in span.links
                ),
                attributes=tuple((span.attributes or {}).items()),
            )
        )
    return rows


def one(rows: Sequence[SpanRow], **wanted: Any) -> SpanRow:
    found = [r for r in rows if all(getattr(r, k) == v for k, v in wanted.items())]
    assert len(found) == 1, f"{len(found)} spans with {wanted}: {[r.name for r in rows]}"
    return found[0]


def ancestors(rows: Sequence[SpanRow], row: SpanRow) -> list[SpanRow]:
    """The chain of parents of ``row`` within ``rows``, nearest first."""
    by_id = {r.span_id: r for r in rows}
    chain = []
    current = row
    while current.parent_id is not None and current.parent_id in by_id:
        current = by_id[current.parent_id]
        chain.append(current)
    return chain


def render_tree(rows: Sequence[SpanRow]) -> str:
    """One trace as an indented tree: service, span name, kind, and its parent."""
    by_id = {r.span_id: r for r in rows}
    children: dict[str | None, list[SpanRow]] = {}
    for row in rows:
        parent = row.parent_id if row.parent_id in by_id else None
        children.setdefault(parent, []).append(row)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for row in children.get(parent, []):
            above = by_id[row.parent_id].name if row.parent_id in by_id else "(root)"
            if row.parent_id is not None and row.parent_id not in by_id:
                above = f"(remote {row.parent_id})"
            link = f"  links: {len(row.links)}" if row.links else ""
            lines.append(f"{'  ' * depth}{row.service} | {row.name} [{row.kind}] <- {above}{link}")
            walk(row.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


# -- the test ---------------------------------------------------------------------------


@dataclass
class TracedAttune:
    http: httpx.AsyncClient
    exporter: InMemorySpanExporter

    def rows(self) -> list[SpanRow]:
        return from_sdk(self.exporter.get_finished_spans())

    def trace_of(self, trace_id: str) -> list[SpanRow]:
        return [r for r in self.rows() if r.trace_id == trace_id]


@pytest.fixture
async def attune(stack: EmbeddedStack, tmp_path: Path) -> AsyncIterator[TracedAttune]:
    """All four services in one process, built while an in-memory exporter is installed."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "attune-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = stack.settings().model_copy(
        update={
            "kafka_group_prefix": f"otel-{uuid.uuid4().hex[:8]}",
            "vector_index_path": tmp_path / "vectors",
            "redis_namespace": f"otel-{uuid.uuid4().hex[:8]}",
        }
    )
    port = free_port()
    with use_tracer_provider(provider):
        async with (
            assemble(settings, SERVICES, name="attune") as assembly,
            serve_http(assembly.app, "127.0.0.1", port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
        ):
            yield TracedAttune(http, exporter)
    provider.shutdown()


async def the_trace_of(attune: TracedAttune, request: str, until: str) -> list[SpanRow]:
    """The trace whose HTTP server span is ``request``, once it holds a span ``until``."""

    async def complete() -> list[SpanRow] | None:
        servers = [r for r in attune.rows() if r.name == request and r.kind == "SERVER"]
        if not servers:
            return None
        rows = attune.trace_of(servers[-1].trace_id)
        return rows if any(r.name == until for r in rows) else None

    rows: list[SpanRow] = await eventually(complete, f"the trace of {request} reaches {until}")
    print(f"\n{request}:\n{render_tree(rows)}")
    return rows


async def test_an_event_is_one_trace_from_the_request_to_the_redis_fold(
    attune: TracedAttune,
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    # The consumer's new group starts at the beginning of a topic other tests wrote to: a
    # first event is folded with that backlog, so that the second one has a batch alone.
    for n in (0, 1):
        event = {"event": "like", "userId": "ann", "messageId": f"{tenant}-{n}",
                 "properties": {"item_id": "apollo", "tags": ["space"]}}  # fmt: skip
        answer = await attune.http.post(
            "/v1/events", json={"events": [event]}, headers={"X-Attune-Tenant": tenant}
        )
        assert answer.status_code == 202, answer.text
        if n == 0:
            await the_trace_of(attune, "POST /v1/events", until="usermodel.fold")

    rows = await the_trace_of(attune, "POST /v1/events", until="usermodel.fold")
    server = one(rows, name="POST /v1/events", kind="SERVER")
    publish = one(rows, name="attune.events publish", kind="PRODUCER")
    process = one(rows, name="attune.events process", kind="CONSUMER")
    fold = one(rows, name="usermodel.fold")
    assert server.parent_id is None
    assert server in ancestors(rows, publish)
    # Across the Kafka hop: the batch span's parent is the producer span, and it links it.
    assert process.parent_id == publish.span_id
    assert (publish.trace_id, publish.span_id) in process.links
    assert process.attribute("messaging.batch.message_count") == 1
    assert fold.parent_id == process.span_id
    # The Redis writes: the fold's scripts under the fold span, the watermarks under the
    # batch span.
    scripts = [r for r in rows if r.kind == "CLIENT" and "EVALSHA" in r.name]
    assert scripts, render_tree(rows)
    assert all(fold in ancestors(rows, r) for r in scripts)
    redis_writes = [r for r in rows if r.kind == "CLIENT" and r.attribute("db.system") == "redis"]
    assert all(process in ancestors(rows, r) for r in redis_writes)


async def test_a_content_item_is_one_trace_down_to_the_embedding_and_the_index(
    attune: TracedAttune,
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    item = {"item_id": "apollo", "title": "Apollo's Long Shadow",
            "description": "The astronauts who flew to the Moon.", "tags": ["space"]}  # fmt: skip
    answer = await attune.http.post(
        "/v1/content", json={"items": [item]}, headers={"X-Attune-Tenant": tenant}
    )
    assert answer.status_code == 202, answer.text

    rows = await the_trace_of(attune, "POST /v1/content", until="vector_index.apply")
    publish = one(rows, name="attune.content publish", kind="PRODUCER")
    process = one(rows, name="attune.content process", kind="CONSUMER")
    assert process.parent_id == publish.span_id
    assert (publish.trace_id, publish.span_id) in process.links
    embed = one(rows, name="embedding.embed_documents")
    apply = one(rows, name="vector_index.apply", kind="CLIENT")
    assert embed.parent_id == process.span_id
    assert apply.parent_id == process.span_id
    assert apply.attribute("attune.writes") == 1
    watermarks = one(rows, name="vector_index.write_metas")
    assert watermarks.parent_id == process.span_id

    # The search request: query embedding, vector search, Redis reads, one trace.
    async def searchable() -> bool:
        found = await attune.http.post(
            "/v1/search", json={"query": "astronauts on the moon", "user_id": "ann"},
            headers={"X-Attune-Tenant": tenant},
        )  # fmt: skip
        return bool(found.json()["items"])

    await eventually(searchable, "search finds the item")
    rows = await the_trace_of(attune, "POST /v1/search", until="vector_index.search")
    server = one(rows, name="POST /v1/search", kind="SERVER")
    below = [r for r in rows if r is not server]
    assert {r.name for r in below} >= {"embedding.embed_query", "vector_index.search"}
    assert any(r.attribute("db.system") == "redis" for r in below), render_tree(rows)
    assert all(server in ancestors(rows, r) for r in below)
