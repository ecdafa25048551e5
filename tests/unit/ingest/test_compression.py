"""Request bodies: gzip inflated within the size limit (refused clearly otherwise), and
JSON parsed straight into the route's model when it validates."""

from __future__ import annotations

import gzip
import json

import pytest
from pydantic import BaseModel
from starlette.types import Message

from schemas.api import EventBatchIn
from schemas.topics import EVENTS
from services.ingest.compression import BodyTooLarge, IngestRequest, gunzip
from tests.unit.ingest.conftest import Ingest, event, running_ingest, unit_settings

GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def test_gunzip_inflates_one_or_more_members() -> None:
    assert gunzip(gzip.compress(b"hello"), 100) == b"hello"
    assert gunzip(gzip.compress(b"ab") + gzip.compress(b"cd"), 100) == b"abcd"
    assert gunzip(gzip.compress(b"x" * 100), 100) == b"x" * 100


def test_gunzip_stops_at_the_limit() -> None:
    with pytest.raises(BodyTooLarge):
        gunzip(gzip.compress(b"x" * 101), 100)
    with pytest.raises(BodyTooLarge):
        gunzip(gzip.compress(b"x" * 60) + gzip.compress(b"y" * 60), 100)


@pytest.mark.parametrize(
    "data", [b"not gzip", gzip.compress(b"hello")[:-6]], ids=["garbage", "truncated"]
)
def test_gunzip_refuses_broken_data(data: bytes) -> None:
    with pytest.raises(ValueError, match="invalid gzip"):
        gunzip(data, 100)


async def test_native_endpoints_take_gzip_bodies(ingest: Ingest) -> None:
    body = gzip.compress(json.dumps({"events": [event()]}).encode())
    answer = await ingest.http.post("/v1/events", content=body, headers=GZIP_JSON)
    assert answer.status_code == 202, answer.text
    assert [p.value["messageId"] for p in ingest.on(EVENTS.name)] == ["m-1"]


async def test_a_gzip_bomb_is_413() -> None:
    async with running_ingest(unit_settings(max_body_bytes=4_096)) as ingest:
        padding = " " * 100_000  # inflates far past the limit, compresses to ~100 bytes
        body = gzip.compress(json.dumps({"events": [event()]}).encode() + padding.encode())
        assert len(body) < 4_096
        answer = await ingest.http.post("/v1/events", content=body, headers=GZIP_JSON)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert ingest.published == []


async def test_broken_gzip_is_400(ingest: Ingest) -> None:
    answer = await ingest.http.post("/v1/batch", content=b"\x1f\x8bnope", headers=GZIP_JSON)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_request"


async def test_an_unknown_content_encoding_is_415(ingest: Ingest) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "br"}
    answer = await ingest.http.post("/v1/events", content=b"{}", headers=headers)
    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "unsupported_media_type"


def _request(body: bytes, model: type[BaseModel] | None) -> IngestRequest:
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return IngestRequest(scope, receive, model)


async def test_a_valid_body_is_parsed_straight_into_the_routes_model() -> None:
    body = json.dumps({"events": [event()]}).encode()
    parsed = await _request(body, EventBatchIn).json()
    assert isinstance(parsed, EventBatchIn)
    assert parsed.events[0].message_id == "m-1"
    assert await _request(body, None).json() == json.loads(body)


async def test_an_invalid_body_is_left_as_json_for_fastapi_to_report() -> None:
    body = json.dumps({"events": [{"messageId": "m-1"}]}).encode()  # no user, no event
    assert await _request(body, EventBatchIn).json() == json.loads(body)
    with pytest.raises(json.JSONDecodeError):
        await _request(b"{not json", EventBatchIn).json()


async def test_a_gzipped_body_is_parsed_into_the_model_too(ingest: Ingest) -> None:
    events = [event("m-1", "u-1"), event("m-2", "u-2", timestamp="2024-05-01T12:00:00+02:00")]
    body = gzip.compress(json.dumps({"batch": events, "sentAt": "2024-05-01T12:00:01Z"}).encode())
    answer = await ingest.http.post("/v1/batch", content=body, headers=GZIP_JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["ids"] == ["m-1", "m-2"]
    values = [p.value for p in ingest.on(EVENTS.name)]
    assert [v["messageId"] for v in values] == ["m-1", "m-2"]
    assert values[1]["timestamp"] == "2024-05-01T10:00:00Z"
    assert all(v["sentAt"] == "2024-05-01T12:00:01Z" for v in values)
