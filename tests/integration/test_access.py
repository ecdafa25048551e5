"""Access on the real apps (the embedded broker and Redis, the real model, uvicorn on a
free loopback port): write keys ingest and only ingest, read keys query and only query,
the tenant is the key's, a key over its rate gets 429 with Retry-After, and CORS
answers a browser's preflight only when configured."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.app.bootstrap import Service, assemble
from services.app.embedded import EmbeddedStack
from services.common.settings import Settings
from tests.integration.test_ingest_service import consume, serving
from tests.polling import eventually

pytestmark = pytest.mark.integration

WRITE = {"acme": "wk-acme-0b5d9f2a7c", "globex": "wk-globex-6e1c4a8d3f"}
READ = {"acme": "rk-acme-3f7a1c9e5b", "globex": "rk-globex-8d2b6f0a4e"}
ORIGIN = "https://shop.example"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def keyed(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={
            "write_keys": {tenant: [SecretStr(key)] for tenant, key in WRITE.items()},
            "read_keys": {tenant: [SecretStr(key)] for tenant, key in READ.items()},
            "kafka_group_prefix": f"access-{uuid.uuid4().hex[:8]}",
            "redis_namespace": f"access-{uuid.uuid4().hex[:8]}",
            **overrides,
        }
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, services: tuple[Service, ...]) -> AsyncIterator[str]:
    async with assemble(settings, services) as assembly, serving(assembly.app) as url:
        yield url


@dataclass
class Api:
    http: httpx.AsyncClient
    settings: Settings


@pytest.fixture(scope="module")
async def api(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """Ingest, the user model and query in one process, keyed, with CORS for ORIGIN."""
    settings = keyed(
        stack.settings(Settings()),
        vector_index_path=tmp_path_factory.mktemp("access") / "vectors",
        cors_origins=[ORIGIN],
    )
    services = (Service.ingest, Service.usermodel, Service.query)
    async with (
        running(settings, services) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield Api(http, settings)


def identify(user: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "messageId": f"id-{uuid.uuid4()}", "userId": user, "traits": traits}


async def test_a_write_key_ingests_and_the_tenant_is_the_keys(api: Api) -> None:
    event = {"messageId": f"w-{uuid.uuid4()}", "userId": "wu-1", "event": "view"}
    answer = await api.http.post(
        "/v1/events", json={"events": [event]}, headers=bearer(WRITE["acme"])
    )
    assert answer.status_code == 202, answer.text
    segment = await api.http.post(
        "/v1/batch", json={"batch": [identify("wu-1", plan="pro")]}, headers=bearer(WRITE["acme"])
    )
    assert segment.status_code == 200, segment.text

    record = (await consume(api.settings, [event["messageId"]]))[event["messageId"]]
    assert record.key == b"acme/wu-1"


async def test_a_write_key_cannot_query(api: Api) -> None:
    for path in ("/v1/trending", "/v1/users/wu-1", "/v1/users/wu-1/recommendations"):
        answer = await api.http.get(path, headers=bearer(WRITE["acme"]))
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"
    search = await api.http.post(
        "/v1/search", json={"query": "space"}, headers={"X-API-Key": WRITE["acme"]}
    )
    assert search.status_code == 403


async def test_a_read_key_queries_and_cannot_ingest(api: Api) -> None:
    trending = await api.http.get("/v1/trending", headers=bearer(READ["acme"]))
    assert trending.status_code == 200, trending.text
    assert trending.json()["tenant"] == "acme"

    event = {"messageId": f"r-{uuid.uuid4()}", "userId": "ru-1", "event": "view"}
    refused = await api.http.post(
        "/v1/events", json={"events": [event]}, headers=bearer(READ["acme"])
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    # the Segment API with the read key as the basic-auth user, as an SDK would send it
    sdk = await api.http.post(
        "/v1/batch", json={"batch": [identify("ru-1")]}, auth=(READ["acme"], "")
    )
    assert sdk.status_code == 403
    assert sdk.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/trending", None),
        ("GET", "/v1/users/wu-1", None),
        ("POST", "/v1/search", {"query": "space"}),
        ("POST", "/v1/events", {"events": [{"messageId": "m", "userId": "u", "event": "view"}]}),
        ("POST", "/v1/batch", {"batch": []}),
    ],
)
async def test_a_missing_or_unknown_key_is_401(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    for headers in ({}, bearer("rk-acme-3f7a1c9e5c"), {"X-Attune-Tenant": "acme"}):
        answer = await api.http.request(method, path, json=body, headers=headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.json()["error"]["code"] == "unauthorized"


async def test_a_tenant_named_besides_the_key_cannot_cross(api: Api) -> None:
    """globex's user, with traits, is readable with globex's read key only."""
    user = f"gu-{uuid.uuid4().hex[:6]}"
    posted = await api.http.post(
        "/v1/batch",
        json={"batch": [identify(user, email="g@globex.example")]},
        headers=bearer(WRITE["globex"]),
    )
    assert posted.status_code == 200, posted.text

    async def folded() -> httpx.Response | None:
        answer = await api.http.get(f"/v1/users/{user}", headers=bearer(READ["globex"]))
        return answer if answer.status_code == 200 else None

    profile = await eventually(folded, f"globex's {user} folded", within=60, interval=0.2)
    assert profile.json()["traits"] == {"email": "g@globex.example"}

    # acme's read key sees no such user in acme, and naming globex is refused
    own = await api.http.get(f"/v1/users/{user}", headers=bearer(READ["acme"]))
    assert own.status_code == 404
    crossing = await api.http.get(
        f"/v1/users/{user}", headers={**bearer(READ["acme"]), "X-Attune-Tenant": "globex"}
    )
    assert crossing.status_code == 403
    assert crossing.json()["error"]["code"] == "tenant_mismatch"
    # a body naming another tenant is refused on ingest
    event = {"messageId": "x", "userId": user, "event": "view", "tenant": "globex"}
    refused = await api.http.post(
        "/v1/events", json={"events": [event]}, headers=bearer(WRITE["acme"])
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_mismatch"


async def test_health_and_metrics_need_no_key(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await api.http.get(path)).status_code == 200, path


async def test_a_configured_origin_gets_its_preflight_and_cors_headers(api: Api) -> None:
    preflight = await api.http.options(
        "/v1/batch",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    # the answer itself, an error included, can be read by the page
    refused = await api.http.post("/v1/batch", json={"batch": []}, headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN

    other = await api.http.options(
        "/v1/batch",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def throttled_count(metrics: str) -> float:
    found = re.search(
        r'^attune_http_throttled_total\{access="write",tenant="acme"\} (\S+)$', metrics, re.M
    )
    return float(found[1]) if found else 0.0


async def test_over_its_rate_a_key_gets_429_with_retry_after_and_cors_is_off_by_default(
    stack: EmbeddedStack,
) -> None:
    settings = keyed(stack.settings(Settings()), rate_limit_per_s=0.01, rate_limit_burst=2)
    assert settings.cors_origins == []
    body = {"batch": [identify(f"t-{uuid.uuid4().hex[:6]}")]}
    async with (
        running(settings, (Service.ingest,)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        before = throttled_count((await http.get("/metrics")).text)
        for _ in range(2):
            answer = await http.post("/v1/batch", json=body, headers=bearer(WRITE["acme"]))
            assert answer.status_code == 200, answer.text
        throttled = await http.post("/v1/batch", json=body, headers=bearer(WRITE["acme"]))
        assert throttled.status_code == 429, throttled.text
        assert throttled.headers["retry-after"] == "100"  # a token every 100 s
        error = throttled.json()["error"]
        assert error["code"] == "too_many_requests"
        assert "rate limit" in error["message"]
        assert throttled.json()["code"] == "too_many_requests"  # the Segment SDKs read this
        # another key has its own bucket
        other = await http.post("/v1/batch", json=body, headers=bearer(WRITE["globex"]))
        assert other.status_code == 200, other.text

        metrics = (await http.get("/metrics")).text
        assert throttled_count(metrics) == before + 1
        assert 'attune_http_rate_limit{setting="per_second"} 0.01' in metrics
        assert 'attune_http_rate_limit{setting="burst"} 2.0' in metrics

        preflight = await http.options(
            "/v1/batch", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 405
        assert not any(h.startswith("access-control-") for h in preflight.headers)
