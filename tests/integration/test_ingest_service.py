"""The ingest service on real parts: uvicorn on a free loopback port, the embedded broker,
the real Segment and RudderStack SDKs, and a real Kafka consumer reading what arrived."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from fastapi import FastAPI
from pydantic import SecretStr
from rudderstack.analytics.client import Client as RudderClient
from rudderstack.analytics.request import APIError as RudderAPIError
from segment.analytics.client import Client as SegmentClient
from segment.analytics.request import APIError as SegmentAPIError

from schemas import EVENTS
from services.app.bootstrap import Service, assemble
from services.app.embedded import ManagedProcess, free_port, tansu_binary
from services.common.kafka import aiokafka_options, ensure_topics, make_broker
from services.common.settings import Settings
from services.ingest.publish import bare_producer

pytestmark = pytest.mark.integration

KEYS = {"acme": "wk-acme-7d2f9e4b1c", "globex": "wk-globex-3a8c6e0f2d"}
WHEN = datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)


@contextlib.asynccontextmanager
async def serving(app: FastAPI, start_timeout_s: float = 20.0) -> AsyncIterator[str]:
    """Run ``app`` under a real uvicorn server on a free 127.0.0.1 port; stop it after."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start in time")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@contextlib.asynccontextmanager
async def serving_ingest(settings: Settings) -> AsyncIterator[str]:
    """Ingest as `attune run ingest` assembles it, served by a real uvicorn server."""
    async with assemble(settings, (Service.ingest,)) as assembly, serving(assembly.app) as url:
        yield url


async def consume(
    settings: Settings, message_ids: Iterable[str], timeout_s: float = 30.0
) -> dict[str, ConsumerRecord[bytes, bytes]]:
    """Read the events topic from the start until every id in ``message_ids`` is seen."""
    wanted = set(message_ids)
    found: dict[str, ConsumerRecord[bytes, bytes]] = {}
    consumer = AIOKafkaConsumer(
        **aiokafka_options(settings), enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(EVENTS.name, p) for p in range(EVENTS.partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while wanted - found.keys():
            if time.monotonic() > deadline:
                raise TimeoutError(f"never arrived: {sorted(wanted - found.keys())}")
            batches = await consumer.getmany(timeout_ms=500)
            for record in (r for records in batches.values() for r in records):
                try:  # other tests share the topic, some with malformed messages
                    message_id = json.loads(record.value or b"null")["messageId"]
                except (ValueError, TypeError, KeyError):
                    continue
                if message_id in wanted:
                    found[message_id] = record
    finally:
        await consumer.stop()
    return found


def _value(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(record.value)
    return value


@pytest.fixture(scope="module")
def keyed_settings(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(
        update={"write_keys": {tenant: [SecretStr(key)] for tenant, key in KEYS.items()}}
    )


@pytest.fixture(scope="module")
async def ingest_url(keyed_settings: Settings) -> AsyncIterator[str]:
    async with serving_ingest(keyed_settings) as url:
        yield url


def _check_arrived(
    record: ConsumerRecord[bytes, bytes], tenant: str, sent: dict[str, Any]
) -> dict[str, Any]:
    """The event on the topic is the one the SDK sent, keyed by tenant/user."""
    value = _value(record)
    assert record.key == f"{tenant}/{sent['userId']}".encode()
    assert dict(record.headers)["content-type"] == b"application/json"
    assert value["tenant"] == tenant
    assert value["messageId"] == sent["messageId"]
    assert value["userId"] == sent["userId"]
    assert value["type"] == sent["type"]
    assert value.get("event") == sent.get("event")
    # Sent properties arrive as sent; the contract adds its own fields only as null.
    properties = value["properties"]
    assert {k: properties[k] for k in sent.get("properties", {})} == sent.get("properties", {})
    assert all(properties[k] is None for k in properties.keys() - sent.get("properties", {}))
    assert datetime.fromisoformat(value["timestamp"]) == WHEN
    assert value["receivedAt"] is not None
    assert value["context"]["library"]["name"] == "analytics-python"
    return value


async def test_segment_sdk_events_arrive_unchanged(
    ingest_url: str, keyed_settings: Settings
) -> None:
    errors: list[Exception] = []
    client = SegmentClient(
        write_key=KEYS["acme"],
        host=ingest_url,
        sync_mode=True,
        max_retries=0,
        on_error=lambda error, batch: errors.append(error),
    )
    sent = [
        {
            "type": "track",
            "messageId": f"seg-{uuid.uuid4()}",
            "userId": "seg-user-1",
            "event": "Product Viewed",
            "properties": {"item_id": "movie-1", "rating": 4.5, "colour": "red"},
        },
        {
            "type": "page",
            "messageId": f"seg-{uuid.uuid4()}",
            "userId": "seg-user-2",
            "properties": {"path": "/films"},
        },
    ]
    await asyncio.to_thread(
        client.track,
        user_id=sent[0]["userId"],
        event=sent[0]["event"],
        properties=sent[0]["properties"],
        timestamp=WHEN,
        message_id=sent[0]["messageId"],
    )
    await asyncio.to_thread(
        client.page,
        user_id=sent[1]["userId"],
        name="Films",
        properties=sent[1]["properties"],
        timestamp=WHEN,
        message_id=sent[1]["messageId"],
    )
    assert errors == []

    records = await consume(keyed_settings, [s["messageId"] for s in sent])
    for message in sent:
        _check_arrived(records[message["messageId"]], "acme", message)
    assert _value(records[sent[1]["messageId"]])["name"] == "Films"


async def test_rudderstack_sdk_gzipped_batch_arrives_unchanged(
    ingest_url: str, keyed_settings: Settings
) -> None:
    errors: list[Exception] = []
    client = RudderClient(
        write_key=KEYS["globex"],
        host=ingest_url,  # the data plane URL
        gzip=True,
        max_retries=0,
        upload_interval=0.05,
        on_error=lambda error, batch: errors.append(error),
    )
    sent = [
        {
            "type": "track",
            "messageId": f"rs-{uuid.uuid4()}",
            "userId": f"rs-user-{n % 3}",
            "event": "like" if n % 2 else "view",
            "properties": {"item_id": f"movie-{n}", "value": n},
        }
        for n in range(25)
    ]
    identify = {"type": "identify", "messageId": f"rs-{uuid.uuid4()}", "userId": "rs-user-0"}
    try:
        for message in sent:
            client.track(
                user_id=message["userId"],
                event=message["event"],
                properties=message["properties"],
                timestamp=WHEN,
                message_id=message["messageId"],
            )
        client.identify(
            user_id=identify["userId"],
            traits={"plan": "pro"},
            timestamp=WHEN,
            message_id=identify["messageId"],
        )
        await asyncio.to_thread(client.flush)
    finally:
        await asyncio.to_thread(client.join)
    assert errors == []

    records = await consume(keyed_settings, [m["messageId"] for m in [*sent, identify]])
    for message in sent:
        _check_arrived(records[message["messageId"]], "globex", message)
    identified = _check_arrived(records[identify["messageId"]], "globex", identify)
    assert identified["context"]["traits"] == {"plan": "pro"}  # where RudderStack puts them


async def test_sdks_are_told_why_a_request_is_refused(ingest_url: str) -> None:
    """Both SDKs read ``code`` and ``message`` from an error body; with them a 4xx is final
    (without them RudderStack fails with a KeyError and retries)."""
    rudder = RudderClient(write_key="wrong-key", host=ingest_url, sync_mode=True)
    with pytest.raises(RudderAPIError) as rudder_error:
        await asyncio.to_thread(rudder.track, user_id="u-1", event="view")
    assert (rudder_error.value.status, rudder_error.value.code) == (401, "unauthorized")

    segment = SegmentClient(write_key="wrong-key", host=ingest_url, sync_mode=True)
    with pytest.raises(SegmentAPIError) as segment_error:
        await asyncio.to_thread(segment.track, user_id="u-1", event="view")
    assert (segment_error.value.status, segment_error.value.code) == (401, "unauthorized")


async def test_native_endpoint_needs_a_key_and_stores_before_answering(
    ingest_url: str, keyed_settings: Settings
) -> None:
    event = {
        "messageId": f"native-{uuid.uuid4()}",
        "userId": "native-user",
        "event": "purchase",
        "timestamp": WHEN.isoformat(),
    }
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        refused = await http.post("/v1/events", json={"events": [event]})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"

        answer = await http.post(
            "/v1/events",
            json={"events": [event]},
            headers={"Authorization": f"Bearer {KEYS['acme']}"},
        )
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": 1, "ids": [event["messageId"]]}

        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"kafka": "ok"}

    record = (await consume(keyed_settings, [event["messageId"]]))[event["messageId"]]
    assert record.key == b"acme/native-user"
    assert _value(record)["event"] == "purchase"


async def test_unreachable_broker_gets_503_with_retry_after(stack_settings: Settings) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = stack_settings.model_copy(
        update={"kafka_bootstrap_servers": closed, "publish_timeout_s": 1.0}
    )
    event = {"messageId": f"down-{uuid.uuid4()}", "userId": "u-1", "event": "view"}
    async with serving_ingest(settings) as url, httpx.AsyncClient(base_url=url) as http:
        started = time.monotonic()
        answer = await http.post("/v1/events", json={"events": [event]})
        assert time.monotonic() - started < 5
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"].isdigit()
        error = answer.json()["error"]
        assert error["code"] == "unavailable"
        assert error["message"]

        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"].startswith("error")

        # An SDK is told too: no 2xx for an event that is not stored.
        client = SegmentClient(write_key="any", host=url, sync_mode=True, max_retries=0)
        with pytest.raises(SegmentAPIError) as raised:
            await asyncio.to_thread(client.track, user_id="u-1", event="view")
        assert raised.value.status == 503


class StallingRelay:
    """A TCP relay in front of the broker that can stop passing bytes: a broker that
    hangs, or a network partition, without losing what was sent."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65_536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        self.flowing.set()
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()


def private_settings(port: int) -> Settings:
    return Settings(
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        kafka_enable_idempotence=False,  # Tansu rejects the idempotent producer
        kafka_session_timeout_ms=6_000,
        publish_timeout_s=1.0,
    )


@contextlib.asynccontextmanager
async def private_broker(
    folder: Path, port: int, advertised_port: int | None = None
) -> AsyncIterator[None]:
    """A broker of our own on ``port`` (clients told to use ``advertised_port``), with the
    events topic; stopped on the way out."""
    advertised = advertised_port or port
    process = ManagedProcess.start(
        "broker (tansu)",
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{advertised}",
        ],
        folder / f"tansu-{port}.log",
        {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                await ensure_topics(private_settings(port), [EVENTS], with_config=False)
                break
            except Exception:
                if process.exited() or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        yield
    finally:
        process.stop()


@contextlib.asynccontextmanager
async def stallable_broker(folder: Path) -> AsyncIterator[tuple[Settings, StallingRelay]]:
    """A private broker that clients reach only through a :class:`StallingRelay`."""
    relay_port, broker_port = free_port(), free_port()
    relay = StallingRelay(broker_port)
    await relay.start(relay_port)
    try:
        async with private_broker(folder, broker_port, advertised_port=relay_port):
            yield private_settings(relay_port), relay
    finally:
        await relay.close()


async def test_ingest_started_before_the_broker_connects_once_it_is_up(tmp_path: Path) -> None:
    port = free_port()
    settings = private_settings(port)
    body = {"events": [{"messageId": f"late-{uuid.uuid4()}", "userId": "u-1", "event": "view"}]}
    # The broker starts after ingest and stops after it (a broker with clients connected
    # takes seconds to stop).
    async with (
        contextlib.AsyncExitStack() as later,
        serving_ingest(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        assert (await http.post("/v1/events", json=body)).status_code == 503
        await later.enter_async_context(private_broker(tmp_path, port))
        deadline = time.monotonic() + 30
        while (answer := await http.post("/v1/events", json=body)).status_code != 202:
            assert answer.status_code == 503, answer.text
            assert time.monotonic() < deadline, "ingest never connected"
            await asyncio.sleep(0.1)
        assert (await http.get("/readyz")).status_code == 200


async def test_a_broker_that_stops_acking_gets_503_and_recovers(tmp_path: Path) -> None:
    def event() -> dict[str, Any]:
        return {"messageId": f"stall-{uuid.uuid4()}", "userId": "u-stall", "event": "view"}

    first, stalled = event(), event()
    async with (
        stallable_broker(tmp_path) as (settings, relay),
        serving_ingest(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        assert (await http.post("/v1/events", json={"events": [first]})).status_code == 202

        relay.flowing.clear()
        started = time.monotonic()
        answer = await http.post("/v1/events", json={"events": [stalled]})
        waited = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"].isdigit()
        assert answer.json()["error"]["code"] == "unavailable"
        assert settings.publish_timeout_s <= waited < settings.publish_timeout_s + 3

        relay.flowing.set()
        retried = await http.post("/v1/events", json={"events": [stalled]})
        assert retried.status_code == 202, retried.text

        records = await consume(settings, [first["messageId"], stalled["messageId"]])
    assert records.keys() == {first["messageId"], stalled["messageId"]}


async def test_with_tracing_off_messages_go_to_aiokafka_directly(keyed_settings: Settings) -> None:
    """FastStream's publish path is skipped when no publish middleware needs it."""
    broker = make_broker(keyed_settings)
    assert bare_producer(broker) is None  # not connected: broker.publish answers that
    await broker.connect()
    try:
        assert isinstance(bare_producer(broker), AIOKafkaProducer)
    finally:
        await broker.stop()
