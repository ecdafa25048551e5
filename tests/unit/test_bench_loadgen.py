"""The load generator's HTTP client and the parsing of /metrics, against a canned server."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from bench.httpclient import Connection, encode_request, parse_head
from bench.loadgen import run
from bench.services import metric, parse_metrics, settings_env
from services.common.settings import Settings


def test_encode_request() -> None:
    raw = encode_request("POST", "/v1/events", "127.0.0.1", {"X-A": "b"}, b'{"a":1}')
    assert raw == (
        b'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\r\nContent-Length: 7\r\n\r\n{"a":1}'
    )
    assert b"Content-Length" not in encode_request("GET", "/", "127.0.0.1")


def test_parse_head() -> None:
    head = b"HTTP/1.1 202 Accepted\r\ncontent-length: 12\r\nconnection: close\r\n\r\n"
    assert parse_head(head) == (202, 12, False, True)
    assert parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") == (
        200, None, True, False,
    )  # fmt: skip


def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Connection("example.com", 80)


async def _server(bodies: list[bytes]) -> tuple[asyncio.Server, int]:
    """Answers each request with the next body: content-length, then chunked, alternately."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            body = bodies[served % len(bodies)]
            if served % 2:
                chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            served += 1
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_connection_reads_both_body_framings() -> None:
    server, port = await _server([b'{"strategy":"personalized"}', b"second"])
    async with server:
        connection = Connection("127.0.0.1", port)
        assert await connection.send(encode_request("GET", "/a", "127.0.0.1")) == (
            200, b'{"strategy":"personalized"}',
        )  # fmt: skip
        assert await connection.send(encode_request("GET", "/b", "127.0.0.1")) == (200, b"second")
        connection.close()


async def test_closed_loop_is_bounded_and_counts_matches() -> None:
    server, port = await _server([b'{"strategy":"personalized"}', b'{"strategy":"trending"}'])
    async with server:
        result = await run({
            "mode": "closed", "host": "127.0.0.1", "port": port,
            "requests": [{"method": "GET", "path": "/x"}], "concurrency": 3, "warmup": 5,
            "max_requests": 40, "max_seconds": 10, "match": '"strategy":"personalized"',
        })  # fmt: skip
    assert result["completed"] == 40
    assert len(result["latencies_ms"]) == 40
    assert result["statuses"] == {"200": 40}
    assert 0 < result["matched"] < 40
    assert result["rate_per_s"] > 0
    json.dumps(result)  # what the subprocess prints


PROMETHEUS = """\
# HELP attune_consumer_messages_total Messages read.
# TYPE attune_consumer_messages_total counter
attune_consumer_messages_total{consumer="attune-usermodel",topic="attune.events"} 120.0
attune_consumer_messages_total{consumer="other",topic="attune.events"} 5.0
attune_usermodel_events_total 118.0
odd_label_total{path="a,b=c"} 1.0
"""


def test_parse_metrics() -> None:
    samples = parse_metrics(PROMETHEUS)
    assert metric(samples, "attune_consumer_messages_total") == 125
    assert metric(samples, "attune_consumer_messages_total", consumer="attune-usermodel") == 120
    assert metric(samples, "attune_usermodel_events_total") == 118
    assert metric(samples, "odd_label_total", path="a,b=c") == 1
    assert metric(samples, "missing_total") == 0


def test_settings_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_HTTP_PORT", "1")  # the parent's own ATTUNE_* never leak through
    settings = Settings(
        http_port=8123, kafka_enable_idempotence=False, event_weights={"view": 2.0},
        write_keys={"acme": ["wk-acme-5e1d9c3b7a"]}, read_keys={"acme": ["rk-acme-2b8f4a6c0e"]},
        cors_origins=["https://shop.example"],
    )  # fmt: skip
    env = settings_env(settings)
    assert env["ATTUNE_HTTP_PORT"] == "8123"
    assert env["ATTUNE_KAFKA_ENABLE_IDEMPOTENCE"] == "false"
    for name, value in env.items():
        if name.startswith("ATTUNE_"):
            monkeypatch.setenv(name, value)
    assert Settings() == settings


async def test_a_keep_alive_connection_the_server_dropped_is_reopened_once() -> None:
    """The server answers the first request of each connection and drops the connection
    on the second, unanswered (as a keep-alive timeout racing a new request does)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        connection = Connection("127.0.0.1", port)
        request = encode_request("GET", "/", "127.0.0.1")
        for _ in range(3):
            assert await connection.send(request) == (200, b"ok")
        connection.close()
