"""The Segment / RudderStack HTTP API shape: /v1/batch, /v1/track, /v1/page, /v1/screen,
/v1/identify, with the write key as the basic-auth user and gzip bodies."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from schemas.topics import EVENTS
from tests.unit.ingest.conftest import Ingest, basic, event

WHEN = "2024-05-01T12:00:00.123+00:00"


def sdk_message(message_id: str, user_id: str = "u-1", **fields: Any) -> dict[str, Any]:
    """A call as segment-analytics-python / rudder-sdk-python put it in a batch."""
    return {
        "type": "track",
        "event": "Product Viewed",
        "properties": {"item_id": "movie-1"},
        "messageId": message_id,
        "userId": user_id,
        "anonymousId": None,
        "timestamp": WHEN,
        "integrations": {"All": True},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        "channel": "server",
        **fields,
    }


def sdk_body(*messages: dict[str, Any], write_key: str = "wk-acme-4f9c2d7e1b") -> dict[str, Any]:
    return {"batch": list(messages), "sentAt": "2024-05-01T12:00:01+00:00", "writeKey": write_key}


async def test_an_sdk_batch_is_200_with_success(keyed: Ingest) -> None:
    body = sdk_body(sdk_message("m-1"), sdk_message("m-2", "u-2"))
    answer = await keyed.http.post("/v1/batch", json=body, headers=basic("wk-acme-4f9c2d7e1b"))
    assert answer.status_code == 200, answer.text  # RudderStack accepts 200 only
    assert answer.json() == {"success": True, "accepted": 2, "ids": ["m-1", "m-2"], "ignored": []}

    published = keyed.on(EVENTS.name)
    assert [p.key for p in published] == [b"acme/u-1", b"acme/u-2"]
    value = published[0].value
    assert value["tenant"] == "acme"
    assert value["event"] == "Product Viewed"
    assert value["properties"]["item_id"] == "movie-1"
    assert value["context"]["library"]["name"] == "analytics-python"
    assert value["sentAt"] == "2024-05-01T12:00:01Z"  # the batch's, on each event
    assert value["timestamp"] == "2024-05-01T12:00:00.123000Z"
    assert "writeKey" not in json.dumps(value)


async def test_a_gzipped_batch_is_inflated(keyed: Ingest) -> None:
    raw = json.dumps(sdk_body(sdk_message("m-1"))).encode()
    answer = await keyed.http.post(
        "/v1/batch",
        content=gzip.compress(raw),
        headers={
            **basic("wk-acme-4f9c2d7e1b"),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert answer.status_code == 200, answer.text
    assert [p.value["messageId"] for p in keyed.on(EVENTS.name)] == ["m-1"]


async def test_batch_context_fills_in_without_overriding(ingest: Ingest) -> None:
    mine = sdk_message("m-1", context={"locale": "fr", "ip": "10.0.0.1"})
    body = {"batch": [mine], "context": {"ip": "192.0.2.1", "app": {"name": "shop"}}}
    assert (await ingest.http.post("/v1/batch", json=body)).status_code == 200
    context = ingest.on(EVENTS.name)[0].value["context"]
    assert context == {"locale": "fr", "ip": "10.0.0.1", "app": {"name": "shop"}}


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/track", {"event": "like"}, {"type": "track", "event": "like"}),
        ("/v1/page", {"name": "Home"}, {"type": "page", "name": "Home", "event": None}),
        ("/v1/screen", {"name": "Cart", "type": "track"}, {"type": "screen", "name": "Cart"}),
        ("/v1/identify", {"traits": {"plan": "pro"}}, {"type": "identify"}),
    ],
)
async def test_single_calls_take_their_type_from_the_path(
    keyed: Ingest, path: str, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    call = {"messageId": "m-1", "userId": "u-7", **body}
    answer = await keyed.http.post(path, json=call, headers=basic("wk-globex-8a3e6b0d5c"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["success"] is True
    [published] = keyed.on(EVENTS.name)
    assert published.key == b"globex/u-7"
    assert {k: published.value[k] for k in expected} == expected
    if path == "/v1/identify":
        assert published.value["traits"] == {"plan": "pro"}


async def test_a_track_call_without_event_is_422(ingest: Ingest) -> None:
    answer = await ingest.http.post("/v1/track", json={"messageId": "m-1", "userId": "u"})
    assert answer.status_code == 422
    assert ingest.published == []


async def test_alias_and_group_calls_are_set_aside_and_reported(ingest: Ingest) -> None:
    body = sdk_body(
        sdk_message("m-1"),
        {"type": "group", "messageId": "g-1", "userId": "u-1", "groupId": "team"},
        {"type": "alias", "messageId": "a-1", "userId": "u-1", "previousId": "anon"},
    )
    answer = await ingest.http.post("/v1/batch", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["ignored"] == ["g-1", "a-1"]
    assert answer.json()["ids"] == ["m-1"]
    assert [p.value["messageId"] for p in ingest.on(EVENTS.name)] == ["m-1"]


async def test_a_batch_of_only_group_calls_publishes_nothing(ingest: Ingest) -> None:
    body = sdk_body({"type": "group", "messageId": "g-1", "userId": "u-1"})
    answer = await ingest.http.post("/v1/batch", json=body)
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "accepted": 0, "ids": [], "ignored": ["g-1"]}
    assert ingest.published == []


async def test_errors_carry_segments_top_level_code_and_message(keyed: Ingest) -> None:
    """Both SDKs read body['code'] and body['message'] on an error; RudderStack retries a
    4xx without them instead of giving up."""
    bad = sdk_body(sdk_message("m-1"), {**sdk_message("m-2"), "messageId": None})
    answer = await keyed.http.post("/v1/batch", json=bad, headers=basic("wk-acme-4f9c2d7e1b"))
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == body["error"]["code"] == "validation_error"
    assert body["message"] == body["error"]["message"]
    assert [d["field"] for d in body["error"]["details"]] == ["batch.1.messageId"]
    assert keyed.published == []

    unauthorized = await keyed.http.post("/v1/batch", json=bad, headers=basic("wrong"))
    assert unauthorized.status_code == 401
    assert unauthorized.json()["code"] == "unauthorized"

    other = sdk_body(sdk_message("m-3", tenant="globex"))
    forbidden = await keyed.http.post("/v1/batch", json=other, headers=basic("wk-acme-4f9c2d7e1b"))
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "tenant_mismatch"
    assert forbidden.json()["error"]["details"][0]["field"] == "batch.0.tenant"


async def test_a_single_call_mismatching_tenant_names_the_field(keyed: Ingest) -> None:
    call = {**event(), "tenant": "globex"}
    answer = await keyed.http.post("/v1/track", json=call, headers=basic("wk-acme-4f9c2d7e1b"))
    assert answer.status_code == 403
    assert answer.json()["error"]["details"][0]["field"] == "tenant"


async def test_an_empty_or_unknown_type_batch_is_422(ingest: Ingest) -> None:
    empty = await ingest.http.post("/v1/batch", json={"batch": []})
    assert empty.status_code == 422
    assert empty.json()["error"]["details"][0]["field"] == "batch"
    unknown = await ingest.http.post("/v1/batch", json={"batch": [{**event(), "type": "x"}]})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "batch.0.type"


async def test_a_batch_event_from_a_clock_years_ahead_is_422(ingest: Ingest) -> None:
    future = {**event(), "type": "track", "timestamp": "2050-06-01T00:00:00Z"}
    answer = await ingest.http.post("/v1/batch", json={"batch": [event(), future]})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "batch.1.timestamp"
    assert ingest.published == []


async def test_a_batch_context_is_bounded_before_it_is_copied_into_every_event(
    ingest: Ingest,
) -> None:
    """A 20 KB context on a batch of 1,000 events would become 20 MB of messages."""
    context = {"page": {"referrer": "x" * 20_000}}
    events = [{**event(f"m-{n}"), "type": "track"} for n in range(1_000)]
    answer = await ingest.http.post("/v1/batch", json={"batch": events, "context": context})
    assert answer.status_code == 413
    assert answer.json()["error"]["details"][0]["field"] == "context"
    assert ingest.published == []

    small = {"library": {"name": "analytics-python", "version": "2.4.0"}}
    answer = await ingest.http.post("/v1/batch", json={"batch": events[:3], "context": small})
    assert answer.status_code == 200, answer.text


async def test_a_context_with_an_integer_beyond_64_bits_is_accepted(ingest: Ingest) -> None:
    """Valid JSON: it used to fail the size check of the context with a 500."""
    big = 2**70
    mine = {**event("m-1"), "type": "track", "context": {"campaign": {"id": big}}}
    body = {"batch": [mine], "context": {"app": {"build": -big}}}
    answer = await ingest.http.post("/v1/batch", json=body)
    assert answer.status_code == 200, answer.text
    context = ingest.on(EVENTS.name)[0].value["context"]
    assert context == {"campaign": {"id": big}, "app": {"build": -big}}
