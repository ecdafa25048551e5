"""Attune's own ingest endpoints: /v1/events, /v1/content, DELETE /v1/content/{id}."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from faststream.kafka import KafkaBroker

from schemas.topics import CONTENT, EVENTS
from services.common.http import create_http_app
from services.common.kafka import make_broker
from services.ingest import ingest_router
from tests.unit.ingest.conftest import Ingest, basic, bearer, event, running_ingest, unit_settings


async def test_events_are_published_keyed_by_tenant_and_user(ingest: Ingest) -> None:
    before = datetime.now(UTC)
    answer = await ingest.http.post(
        "/v1/events",
        json={"events": [event("m-1", "u-1"), event("m-2", "u-2", properties={"item_id": "i"})]},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 2, "ids": ["m-1", "m-2"]}

    published = ingest.on(EVENTS.name)
    assert [p.key for p in published] == [b"default/u-1", b"default/u-2"]
    first = published[0]
    assert first.headers["content-type"] == "application/json"
    assert first.value["tenant"] == "default"
    assert first.value["messageId"] == "m-1"
    assert first.value["userId"] == "u-1"
    received = datetime.fromisoformat(first.value["receivedAt"])
    assert received >= before
    assert first.value["timestamp"] == first.value["receivedAt"]  # none given: when received
    assert published[1].value["properties"]["item_id"] == "i"


async def test_an_event_keeps_its_own_timestamp(ingest: Ingest) -> None:
    when = "2024-05-01T12:00:00Z"
    answer = await ingest.http.post("/v1/events", json={"events": [event(timestamp=when)]})
    assert answer.status_code == 202
    value = ingest.on(EVENTS.name)[0].value
    assert datetime.fromisoformat(value["timestamp"]) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert value["receivedAt"] != value["timestamp"]


async def test_anonymous_events_are_keyed_by_anonymous_id(ingest: Ingest) -> None:
    body = {"events": [{"messageId": "m-1", "anonymousId": "anon-9", "event": "view"}]}
    assert (await ingest.http.post("/v1/events", json=body)).status_code == 202
    assert ingest.on(EVENTS.name)[0].key == b"default/anon-9"


async def test_without_keys_the_tenant_comes_from_the_header(ingest: Ingest) -> None:
    answer = await ingest.http.post(
        "/v1/events", json={"events": [event()]}, headers={"X-Attune-Tenant": "initech"}
    )
    assert answer.status_code == 202
    assert ingest.on(EVENTS.name)[0].key == b"initech/u-1"
    assert ingest.on(EVENTS.name)[0].value["tenant"] == "initech"


async def test_without_keys_a_body_tenant_wins(ingest: Ingest) -> None:
    body = {"events": [event("m-1", tenant="umbrella"), event("m-2")]}
    answer = await ingest.http.post("/v1/events", json=body, headers={"X-Attune-Tenant": "other"})
    assert answer.status_code == 202
    assert [p.key for p in ingest.on(EVENTS.name)] == [b"umbrella/u-1", b"other/u-1"]


async def test_an_invalid_tenant_header_is_422(ingest: Ingest) -> None:
    answer = await ingest.http.post(
        "/v1/events", json={"events": [event()]}, headers={"X-Attune-Tenant": "Not Valid!"}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "X-Attune-Tenant"


@pytest.mark.parametrize(
    "headers",
    [bearer("acme"), {"X-API-Key": "wk-acme-4f9c2d7e1b"}, basic("wk-acme-4f9c2d7e1b")],
    ids=["bearer", "x-api-key", "basic-user"],
)
async def test_the_api_key_names_the_tenant(keyed: Ingest, headers: dict[str, str]) -> None:
    body = {"events": [event(tenant="acme"), event("m-2")]}
    answer = await keyed.http.post("/v1/events", json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    assert {p.value["tenant"] for p in keyed.on(EVENTS.name)} == {"acme"}
    assert {p.key for p in keyed.on(EVENTS.name)} == {b"acme/u-1"}


async def test_a_missing_key_is_401(keyed: Ingest) -> None:
    answer = await keyed.http.post("/v1/events", json={"events": [event()]})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert "www-authenticate" in answer.headers
    assert keyed.published == []


async def test_an_unknown_key_is_401_even_with_a_tenant_header(keyed: Ingest) -> None:
    answer = await keyed.http.post(
        "/v1/events",
        json={"events": [event()]},
        headers={"Authorization": "Bearer nope", "X-Attune-Tenant": "acme"},
    )
    assert answer.status_code == 401
    assert keyed.published == []


async def test_a_body_tenant_other_than_the_keys_is_403(keyed: Ingest) -> None:
    body = {"events": [event("m-1"), event("m-2", tenant="globex")]}
    answer = await keyed.http.post("/v1/events", json=body, headers=bearer("acme"))
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "tenant_mismatch"
    assert error["details"][0]["field"] == "events.1.tenant"
    assert keyed.published == []  # nothing of a refused request is published


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [{"userId": "u-1", "event": "view"}]}, "events.0.messageId"),
        ({"events": [event(), event(properties={"rating": 99})]}, "events.1.properties.rating"),
        ({"events": [event(type="purchase")]}, "events.0.type"),
        ({"events": [{"messageId": "m", "event": "view"}]}, "events.0"),
        ({"events": []}, "events"),
        ({"items": []}, "events"),
        ({"events": [event(timestamp="2050-01-01T00:00:00Z")]}, "events.0.timestamp"),
        ({"events": [event(), event(timestamp="1900-01-01T00:00:00Z")]}, "events.1.timestamp"),
    ],
    ids=[
        "no-messageId",
        "bad-rating",
        "bad-type",
        "no-user",
        "empty",
        "wrong-body",
        "year-2050",
        "year-1900",
    ],
)
async def test_invalid_events_are_422_naming_the_field(
    ingest: Ingest, body: dict[str, object], field: str
) -> None:
    answer = await ingest.http.post("/v1/events", json=body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [detail["field"] for detail in error["details"]]
    assert field in error["message"]
    assert ingest.published == []


async def test_malformed_json_is_422(ingest: Ingest) -> None:
    answer = await ingest.http.post(
        "/v1/events", content=b'{"events": [', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"


async def test_content_is_published_keyed_by_tenant_and_item(ingest: Ingest) -> None:
    items = [
        {"item_id": "movie-1", "title": "Alien", "tags": ["sci-fi"]},
        {"item_id": "movie-2", "title": "Heat", "updated_at": "2024-01-01T00:00:00Z"},
    ]
    answer = await ingest.http.post("/v1/content", json={"items": items})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 2, "ids": ["movie-1", "movie-2"]}
    published = ingest.on(CONTENT.name)
    assert [p.key for p in published] == [b"default/movie-1", b"default/movie-2"]
    assert published[0].value["op"] == "upsert"
    assert published[0].value["tags"] == ["sci-fi"]
    assert published[1].value["version"] == 1_704_067_200_000_000  # updated_at in µs


async def test_content_tenant_rules_apply_per_item(keyed: Ingest) -> None:
    items = [{"item_id": "a", "title": "A"}, {"item_id": "b", "title": "B", "tenant": "acme"}]
    answer = await keyed.http.post("/v1/content", json={"items": items}, headers=bearer("globex"))
    assert answer.status_code == 403
    assert answer.json()["error"]["details"][0]["field"] == "items.1.tenant"


async def test_invalid_content_is_422_naming_the_field(ingest: Ingest) -> None:
    answer = await ingest.http.post("/v1/content", json={"items": [{"item_id": "a"}]})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "items.0.title"


async def test_delete_without_a_version_publishes_a_tombstone_without_one(ingest: Ingest) -> None:
    """It deletes whatever version is stored: a version taken from the clock (in
    microseconds) would block every later upsert of a producer that counts versions."""
    answer = await ingest.http.delete("/v1/content/movie-1", headers={"X-Attune-Tenant": "acme"})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 1, "ids": ["movie-1"]}
    [tombstone] = ingest.on(CONTENT.name)
    assert tombstone.key == b"acme/movie-1"
    assert tombstone.value["op"] == "delete"
    assert tombstone.value["tenant"] == "acme"
    assert tombstone.value["version"] is None


@pytest.mark.parametrize("version", [2**53, 2**53 + 1])
async def test_versions_from_2_to_the_53_are_refused(ingest: Ingest, version: int) -> None:
    """The index compares versions as 64-bit floats: 2^53 + 1 and 2^53 compare equal."""
    deleted = await ingest.http.delete(f"/v1/content/movie-1?version={version}")
    item = {"item_id": "movie-1", "title": "Alien", "version": version}
    upserted = await ingest.http.post("/v1/content", json={"items": [item]})

    assert deleted.status_code == 422
    assert deleted.json()["error"]["details"][0]["field"] == "version"
    assert upserted.status_code == 422
    assert upserted.json()["error"]["details"][0]["field"] == "items.0.version"
    assert ingest.on(CONTENT.name) == []
    assert (await ingest.http.delete(f"/v1/content/movie-1?version={2**53 - 1}")).is_success


async def test_delete_takes_a_version_and_ids_with_slashes(ingest: Ingest) -> None:
    answer = await ingest.http.delete("/v1/content/shelf/42?version=7")
    assert answer.status_code == 202
    [tombstone] = ingest.on(CONTENT.name)
    assert tombstone.key == b"default/shelf/42"
    assert tombstone.value["version"] == 7


async def test_delete_refuses_a_negative_version(ingest: Ingest) -> None:
    answer = await ingest.http.delete("/v1/content/movie-1?version=-1")
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "version"


async def test_delete_needs_a_key_when_keys_are_configured(keyed: Ingest) -> None:
    assert (await keyed.http.delete("/v1/content/movie-1")).status_code == 401
    assert keyed.published == []


async def test_a_body_over_the_limit_is_413(ingest: Ingest) -> None:
    big = [event(f"m-{n}", properties={"pad": "x" * 1_000}) for n in range(6_000)]
    answer = await ingest.http.post("/v1/events", json={"events": big})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert ingest.published == []


async def test_a_streamed_body_over_the_limit_is_413() -> None:
    async with running_ingest(unit_settings(max_body_bytes=2_048)) as ingest:

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
            yield b'{"events": ['
            for _ in range(10):
                yield b" " * 1_000

        answer = await ingest.http.post(
            "/v1/events", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


async def test_a_broker_that_does_not_ack_in_time_is_503() -> None:
    stuck = asyncio.Event()

    def add_stuck_subscriber(broker: KafkaBroker) -> None:
        @broker.subscriber(EVENTS.name, group_id="stuck")
        async def never_done(body: dict[str, object]) -> None:
            await stuck.wait()  # the in-memory broker publishes by calling handlers

    settings = unit_settings(publish_timeout_s=0.2)
    async with running_ingest(settings, add_stuck_subscriber) as ingest:
        answer = await ingest.http.post("/v1/events", json={"events": [event()]})
    assert answer.status_code == 503
    assert answer.headers["retry-after"].isdigit()
    error = answer.json()["error"]
    assert error["code"] == "unavailable"
    assert "retry" in error["message"]


async def test_an_unconnected_broker_is_503() -> None:
    settings = unit_settings()
    app = create_http_app(
        service="ingest", title="t", description="d", settings=settings, routers=[ingest_router()]
    )
    app.state.broker = make_broker(settings)  # never connected
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
        answer = await http.post("/v1/events", json={"events": [event()]})
    assert answer.status_code == 503
    assert answer.headers["retry-after"].isdigit()
    assert answer.json()["error"]["code"] == "unavailable"


async def test_the_router_mounts_in_another_app_that_holds_the_broker(ingest: Ingest) -> None:
    """What `attune dev` does: one app, one shared broker on app.state."""
    shared = ingest.app.state.broker
    settings = unit_settings()
    app = create_http_app(
        service="dev", title="t", description="d", settings=settings, routers=[ingest_router()]
    )
    app.state.broker = shared
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dev") as http:
        answer = await http.post("/v1/events", json={"events": [event("m-9")]})
    assert answer.status_code == 202
    assert [p.value["messageId"] for p in ingest.on(EVENTS.name)] == ["m-9"]


async def test_openapi_documents_the_endpoints_and_error_shape(ingest: Ingest) -> None:
    spec = (await ingest.http.get("/openapi.json")).json()
    for path in ("/v1/events", "/v1/content", "/v1/batch", "/v1/track", "/v1/identify"):
        assert "post" in spec["paths"][path], path
    events = spec["paths"]["/v1/events"]["post"]
    assert "202" in events["responses"]
    for status in ("401", "403", "413", "422", "503"):
        schema = events["responses"][status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorResponse"), status
    assert "Retry-After" in events["responses"]["503"]["headers"]
    assert "delete" in spec["paths"]["/v1/content/{item_id}"]
    # The answers are serialized by hand, yet documented by their models.
    accepted = events["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted["$ref"].endswith("/Accepted")
    batch = spec["paths"]["/v1/batch"]["post"]["responses"]["200"]
    assert batch["content"]["application/json"]["schema"]["$ref"].endswith("/SegmentAccepted")


async def test_delete_refuses_a_blank_item_id(ingest: Ingest) -> None:
    answer = await ingest.http.delete("/v1/content/%20%20")
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "item_id"
    assert ingest.published == []


async def test_a_timestamp_within_the_allowed_clock_skew_is_accepted() -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=30)
    async with running_ingest(unit_settings(max_clock_skew_s=3_600)) as ingest:
        answer = await ingest.http.post(
            "/v1/events", json={"events": [event(timestamp=ahead.isoformat())]}
        )
        assert answer.status_code == 202, answer.text
    async with running_ingest(unit_settings(max_clock_skew_s=60)) as ingest:
        answer = await ingest.http.post(
            "/v1/events", json={"events": [event(timestamp=ahead.isoformat())]}
        )
        assert answer.status_code == 422


async def test_an_events_own_context_is_bounded(ingest: Ingest) -> None:
    huge = event(context={"blob": "x" * 1_000_000})
    answer = await ingest.http.post("/v1/events", json={"events": [event("m-0"), huge]})
    assert answer.status_code == 413
    assert answer.json()["error"]["details"][0]["field"] == "events.1.context"
    assert ingest.published == []
