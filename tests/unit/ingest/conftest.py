"""Ingest on FastStream's in-memory TestKafkaBroker: the HTTP app in process (httpx's
ASGI transport), every published message captured with its topic, key and headers."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import SecretStr

from schemas.topics import CONTENT, EVENTS
from services.app.bootstrap import http_app
from services.common.kafka import make_broker
from services.common.settings import Settings
from services.ingest import mount

KEYS = {"acme": "wk-acme-4f9c2d7e1b", "globex": "wk-globex-8a3e6b0d5c"}


@dataclass(frozen=True)
class Published:
    topic: str
    key: bytes | None
    value: dict[str, Any]
    headers: dict[str, Any]


@dataclass
class Ingest:
    http: httpx.AsyncClient
    app: FastAPI
    published: list[Published] = field(default_factory=list)

    def on(self, topic: str) -> list[Published]:
        return [message for message in self.published if message.topic == topic]


def bearer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def basic(write_key: str) -> dict[str, str]:
    """How the Segment and RudderStack SDKs authenticate: the write key as the user."""
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def event(message_id: str = "m-1", user_id: str = "u-1", **fields: Any) -> dict[str, Any]:
    return {"messageId": message_id, "userId": user_id, "event": "view", **fields}


def unit_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"write_keys": {}, "read_keys": {}, "default_tenant": "default"}
    return Settings(**{**base, **overrides})


@contextlib.asynccontextmanager
async def running_ingest(
    settings: Settings, setup: Callable[[KafkaBroker], object] | None = None
) -> AsyncIterator[Ingest]:
    """The ingest app on an in-memory broker; ``setup`` may add subscribers to it."""
    broker = make_broker(settings)
    ingest: Ingest | None = None

    def capture(topic: str) -> Callable[..., Any]:
        async def handle(body: dict[str, Any], message: KafkaMessage) -> None:
            assert ingest is not None
            raw = message.raw_message
            ingest.published.append(Published(topic, raw.key, body, dict(message.headers)))

        return handle

    broker.subscriber(EVENTS.name)(capture(EVENTS.name))
    broker.subscriber(CONTENT.name)(capture(CONTENT.name))
    if setup is not None:
        setup(broker)
    async with TestKafkaBroker(broker) as test_broker:
        app = http_app(settings, [mount(broker=test_broker)], "ingest")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            ingest = Ingest(http, app)
            yield ingest


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    """No API keys: the tenant comes from the header, the body or the default."""
    async with running_ingest(unit_settings()) as running:
        yield running


@pytest.fixture
async def keyed() -> AsyncIterator[Ingest]:
    """API keys configured: every request needs one, and it names the tenant."""
    keys = {tenant: [SecretStr(key)] for tenant, key in KEYS.items()}
    async with running_ingest(unit_settings(write_keys=keys)) as running:
        yield running
