"""gzip request bodies: inflated within the size limit, refused clearly otherwise."""

from __future__ import annotations

import gzip
import json

import pytest

from schemas.topics import EVENTS
from services.ingest.compression import BodyTooLarge, gunzip
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
