"""Tracing and metrics of the real processes: `attune run ingest`, `usermodel`,
`embedder` and `query`, each a process of its own on the embedded stack, export their
spans over OTLP/HTTP (protobuf) to a receiver built on opentelemetry-proto, which
decodes every ExportTraceServiceRequest. One event posted to ingest is one trace across
the processes: each span names its service (resource ``service.name``), and the
consumer's batch span is the child of ingest's producer span (the W3C context travelled
in the Kafka headers). After the traffic, /metrics of every process (the consumers on
their own port) shows the series operators watch, with non-zero values.

Every process is stopped (SIGTERM, then SIGKILL) when the module ends, pass or fail."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from schemas.topics import EVENTS
from services.app.embedded import EmbeddedStack, ManagedProcess, free_port
from tests.integration.otlp_receiver import Receiver, otlp_receiver
from tests.integration.test_telemetry_traces import SpanRow, ancestors, one, render_tree
from tests.polling import eventually, wait_ready

pytestmark = pytest.mark.integration

PROCESSES = ("ingest", "usermodel", "embedder", "query")


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, int]]:
    with otlp_receiver() as running:
        yield running


# -- the four processes -------------------------------------------------------------------


@dataclass
class Attune:
    receiver: Receiver
    ports: dict[str, int]
    processes: dict[str, ManagedProcess]
    tenant: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.last_log_lines(30)}" for n, p in self.processes.items())


def _environment(stack: EmbeddedStack, folder: Path, otlp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ATTUNE_"))}
    env.update(
        {
            "ATTUNE_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "ATTUNE_KAFKA_ENABLE_IDEMPOTENCE": "false",
            "ATTUNE_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "ATTUNE_KAFKA_LOG_MAY_RESET": "true",
            "ATTUNE_KAFKA_GROUP_PREFIX": f"otlp-{uuid.uuid4().hex[:6]}",
            "ATTUNE_REDIS_URL": stack.redis_url,
            "ATTUNE_REDIS_NAMESPACE": f"otlp-{uuid.uuid4().hex[:6]}",
            "ATTUNE_HTTP_HOST": "127.0.0.1",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    return env


def _wait_ready(attune: Attune, service: str, deadline: float) -> None:
    process = attune.processes[service]

    def alive() -> str | None:
        return process.last_log_lines(40) if process.exited() else None

    wait_ready(attune.url(service), alive, within=max(0.0, deadline - time.monotonic()))


@pytest.fixture(scope="module")
def attune(
    stack: EmbeddedStack,
    receiver: tuple[Receiver, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Attune]:
    found, otlp_port = receiver
    folder = tmp_path_factory.mktemp("otlp")
    env = _environment(stack, folder, otlp_port)
    executable = str(Path(sys.executable).with_name("attune"))
    running = Attune(found, {name: free_port() for name in PROCESSES}, {})
    try:
        for name in PROCESSES:
            own = {
                **env,
                "ATTUNE_HTTP_PORT": str(running.ports[name]),
                # The embedder and the query each open a Qdrant Edge folder of their own.
                "ATTUNE_VECTOR_INDEX_PATH": str(folder / f"vectors-{name}"),
            }
            running.processes[name] = ManagedProcess.start(
                name, [executable, "run", name], folder / f"{name}.log", own
            )
        deadline = time.monotonic() + 120
        for name in PROCESSES:
            _wait_ready(running, name, deadline)
        yield running
        for process in running.processes.values():  # a clean SIGTERM exits 0
            process.process.terminate()
        for name, process in running.processes.items():
            assert process.process.wait(20) == 0, f"{name}:\n{process.last_log_lines(40)}"
    finally:
        for process in running.processes.values():
            process.stop(timeout=10)


@pytest.fixture(scope="module")
async def traffic(attune: Attune, stack: EmbeddedStack) -> Attune:
    """Content, events (one of them poison, straight onto the topic), a search and
    recommendations; returns once the usermodel has folded the events."""
    headers = {"X-Attune-Tenant": attune.tenant}
    item = {"item_id": "apollo", "title": "Apollo's Long Shadow",
            "description": "The astronauts who flew to the Moon.", "tags": ["space"]}  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(EVENTS.name, b"{not json", key=b"poison/poison")
    finally:
        await producer.stop()
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{attune.url('ingest')}/v1/content", json={"items": [item]}, headers=headers
        )
        assert answer.status_code == 202, answer.text
        for n in range(3):
            event = {"event": "like", "userId": "ann", "messageId": f"{attune.tenant}-{n}",
                     "properties": {"item_id": "apollo", "tags": ["space"]}}  # fmt: skip
            answer = await http.post(
                f"{attune.url('ingest')}/v1/events", json={"events": [event]}, headers=headers
            )
            assert answer.status_code == 202, answer.text

        async def folded() -> bool:
            user = await http.get(f"{attune.url('query')}/v1/users/ann", headers=headers)
            return user.status_code == 200 and user.json()["events"] >= 3

        await eventually(folded, "the usermodel folds the events", explain=attune.logs)
        search = await http.post(
            f"{attune.url('query')}/v1/search",
            json={"query": "moon", "user_id": "ann"},
            headers=headers,
        )
        assert search.status_code == 200, search.text
        recommended = await http.get(
            f"{attune.url('query')}/v1/users/ann/recommendations", headers=headers
        )
        assert recommended.status_code == 200, recommended.text
        for name in PROCESSES:  # the readiness probes set attune_dependency_up
            assert (await http.get(f"{attune.url(name)}/readyz")).status_code == 200
    return attune


# -- traces -------------------------------------------------------------------------------


async def _traces_of(
    traffic: Attune, request: str, service: str, until: str
) -> list[list[SpanRow]]:
    """The traces whose root is the SERVER span ``request`` of ``service``, once each
    holds a span named ``until``."""

    async def complete() -> list[list[SpanRow]] | None:
        spans = traffic.receiver.spans()
        roots = [r for r in spans if r.name == request and r.kind == "SERVER"]
        traces = [[r for r in spans if r.trace_id == root.trace_id] for root in roots]
        if traces and all(any(r.name == until for r in rows) for rows in traces):
            return traces
        return None

    traces: list[list[SpanRow]] = await eventually(
        complete, f"the traces of {service} {request} reach {until}", explain=traffic.logs
    )
    for rows in traces:
        assert one(rows, name=request, kind="SERVER").service == service
    return traces


def _batch_trace(traffic: Attune, process: SpanRow) -> list[SpanRow]:
    """The trace holding the batch's store writes: the process span's own, or (when its
    batch was traced under another message's trace) the one of the batch span it links."""
    if process.attribute("attune.batch.trace_id") is None:
        return traffic.receiver.trace(process.trace_id)
    (batch_trace, _), *_ = process.links
    return traffic.receiver.trace(batch_trace)


async def test_an_event_is_one_trace_across_the_processes_over_otlp_http(
    traffic: Attune,
) -> None:
    traces = await _traces_of(
        traffic, "POST /v1/events", "attune-ingest", until="attune.events process"
    )
    assert len(traces) == 3
    assert traffic.receiver.exports > 0
    for rows in traces:
        server = one(rows, name="POST /v1/events", kind="SERVER")
        publish = one(rows, name="attune.events publish", kind="PRODUCER")
        process = one(rows, name="attune.events process", kind="CONSUMER")
        assert server.parent_id is None
        assert (publish.service, process.service) == ("attune-ingest", "attune-usermodel")
        assert server in ancestors(rows, publish)
        # Across the Kafka hop, from one process to the other: the consumer's span is the
        # child of the producer span whose context the message's headers carried.
        assert process.parent_id == publish.span_id
        assert process.trace_id == publish.trace_id

    # The store writes of the batch: in the trace of its first message, under the batch
    # span; the batch span links to the producer span of every message it held.
    async def folded() -> list[SpanRow] | None:
        for rows in traces:
            process = one(rows, name="attune.events process", kind="CONSUMER")
            batch = _batch_trace(traffic, process)
            if any(r.name == "usermodel.fold" for r in batch):
                return batch
        return None

    rows = await eventually(folded, "the fold span arrives", explain=traffic.logs)
    print(f"\nPOST /v1/events, as exported over OTLP/HTTP:\n{render_tree(rows)}")
    batch = one(rows, name="attune.events process", kind="CONSUMER")
    fold = one(rows, name="usermodel.fold")
    assert fold.service == "attune-usermodel"
    assert fold.parent_id == batch.span_id
    scripts = [r for r in rows if r.kind == "CLIENT" and "EVALSHA" in r.name]
    assert scripts, render_tree(rows)
    assert all(fold in ancestors(rows, r) for r in scripts)
    assert all(r.service == "attune-usermodel" for r in scripts)
    # A batch span links to the producer span of every message it held; a message of a
    # batch traced under another message has a short process span of its own, which
    # links to that batch span.
    for trace in traces:
        member = one(trace, name="attune.events process", kind="CONSUMER")
        batch_trace_id = member.attribute("attune.batch.trace_id")
        if batch_trace_id is None:
            publish = one(trace, name="attune.events publish", kind="PRODUCER")
            assert (publish.trace_id, publish.span_id) in member.links
        else:
            assert [trace_id for trace_id, _ in member.links] == [batch_trace_id]


async def test_a_content_item_reaches_the_embedder_and_a_search_the_query_service(
    traffic: Attune,
) -> None:
    (rows,) = await _traces_of(
        traffic, "POST /v1/content", "attune-ingest", until="attune.content process"
    )
    publish = one(rows, name="attune.content publish", kind="PRODUCER")
    process = one(rows, name="attune.content process", kind="CONSUMER")
    assert (publish.service, process.service) == ("attune-ingest", "attune-embedder")
    assert process.parent_id == publish.span_id

    async def embedded() -> list[SpanRow] | None:
        batch = _batch_trace(traffic, process)
        return batch if any(r.name == "vector_index.apply" for r in batch) else None

    batch_rows = await eventually(
        embedded, "the embedder's index write arrives", explain=traffic.logs
    )
    print(f"\nPOST /v1/content, as exported over OTLP/HTTP:\n{render_tree(batch_rows)}")
    batch = one(batch_rows, name="attune.content process", kind="CONSUMER")
    for name in ("embedding.embed_documents", "vector_index.apply"):
        write = one(batch_rows, name=name)
        assert (write.service, write.parent_id) == ("attune-embedder", batch.span_id)

    (rows,) = await _traces_of(
        traffic, "POST /v1/search", "attune-query", until="vector_index.search"
    )
    print(f"\nPOST /v1/search, as exported over OTLP/HTTP:\n{render_tree(rows)}")
    server = one(rows, name="POST /v1/search", kind="SERVER")
    below = [r for r in rows if r is not server]
    assert {r.name for r in below} >= {"embedding.embed_query", "vector_index.search"}
    assert any(r.attribute("db.system") == "redis" for r in below), render_tree(rows)
    assert all(r.service == "attune-query" for r in rows)
    assert all(server in ancestors(rows, r) for r in below)


# -- metrics ------------------------------------------------------------------------------


def scrape(traffic: Attune, service: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A process's /metrics: sample name -> [(labels, value)]."""
    text = httpx.get(f"{traffic.url(service)}/metrics", timeout=10).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(f"family:{family.name}", [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    found = [v for have, v in samples.get(name, []) if labels.items() <= have.items()]
    assert found, f"no sample {name}{labels}; have: {sorted(k for k in samples if 'attune' in k)}"
    return sum(found)


async def test_every_process_serves_the_series_operators_watch(traffic: Attune) -> None:
    # The HTTP services: latency per route and status, and their dependencies.
    ingest = scrape(traffic, "ingest")
    latency = "attune_http_request_duration_seconds"
    assert value(ingest, f"{latency}_count", route="/v1/events", status="202") >= 3
    assert value(ingest, f"{latency}_count", route="/v1/content", status="202") >= 1
    assert value(ingest, "attune_dependency_up", dependency="kafka") == 1

    query = scrape(traffic, "query")
    assert value(query, f"{latency}_count", route="/v1/search", status="200") >= 1
    recommendations = "/v1/users/{user_id}/recommendations"
    assert value(query, f"{latency}_bucket", route=recommendations, status="200", le="+Inf") >= 1
    assert value(query, f"{latency}_sum", route="/v1/search") > 0
    for dependency in ("redis", "vector_index"):
        assert value(query, "attune_dependency_up", dependency=dependency) == 1

    # The consumers, on their own ports.
    async def embedded() -> bool:
        return bool(scrape(traffic, "embedder").get("attune_embedder_docs_embedded_total"))

    await eventually(embedded, "the embedder counts its documents", explain=traffic.logs)
    for service, topic, stores in (
        ("usermodel", EVENTS.name, ("kafka", "redis")),
        ("embedder", "attune.content", ("kafka", "vector_index")),
    ):
        samples = scrape(traffic, service)
        assert value(samples, "attune_consumer_messages_total", topic=topic) >= 1
        assert value(samples, "attune_consumer_batch_size_count") >= 1
        assert value(samples, "attune_consumer_batch_size_sum") >= 1
        assert value(samples, "attune_consumer_batch_duration_seconds_sum") > 0
        assert value(samples, "attune_freshness_seconds_count", topic=topic) >= 1
        assert value(samples, "attune_freshness_seconds_sum", topic=topic) > 0
        # Lag per partition, from the fetch's high watermark (caught up by now: >= 0).
        lags = [
            (labels, v) for labels, v in samples["attune_consumer_lag"] if labels["topic"] == topic
        ]
        assert lags
        assert all(labels["partition"].isdigit() and v >= 0 for labels, v in lags)
        # Registered from the start (a batch that fails counts here); none failed.
        assert "family:attune_consumer_failed_messages" in samples
        for dependency in stores:
            assert value(samples, "attune_dependency_up", dependency=dependency) == 1
    usermodel = scrape(traffic, "usermodel")
    assert value(usermodel, "attune_consumer_messages_total", topic=EVENTS.name) >= 4
    assert value(usermodel, "attune_consumer_dead_lettered_total", topic=EVENTS.name) >= 1
    assert value(usermodel, "attune_usermodel_events_total") >= 3
    embedder = scrape(traffic, "embedder")
    assert value(embedder, "attune_embedder_docs_embedded_total") >= 1
