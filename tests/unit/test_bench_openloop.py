"""The open loop: requests leave on schedule whatever the server does, a stall shows in
the latencies (counted from the scheduled time), and every non-2xx answer and timeout
is a failure; the generator reports its own CPU time."""

from __future__ import annotations

import asyncio

from bench.httpclient import failures
from bench.loadgen import run

STALLED, FAILING, HUNG = 10, 20, 30
STALL_S = 0.3


async def _server(released: asyncio.Event) -> tuple[asyncio.Server, int]:
    """Answers ``GET /<n>`` with 200, except: /10 after a stall, /20 with a 503, and /30
    never before ``released`` is set (after the run)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            number = int(head.split(b" ")[1].strip(b"/"))
            status = b"503 Service Unavailable" if number == FAILING else b"200 OK"
            if number == STALLED:
                await asyncio.sleep(STALL_S)  # the server's stall under test
            if number == HUNG:
                await released.wait()
            body = b'{"strategy":"personalized"}' if number % 2 else b"{}"
            writer.write(b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))
            try:
                await writer.drain()
            except ConnectionError:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_stall_is_counted_from_the_scheduled_time_and_failures_are_tallied() -> None:
    released = asyncio.Event()
    server, port = await _server(released)
    async with server:
        result = await run({
            "mode": "open", "host": "127.0.0.1", "port": port, "rate_per_s": 100.0,
            "warmup_s": 0.0, "duration_s": 1.0, "timeout_s": 1.0,
            "requests": [{"method": "GET", "path": f"/{n}"} for n in range(100)],
            "match": '"strategy":"personalized"',
        })  # fmt: skip
        released.set()
    assert result["scheduled"] == 100
    assert result["completed"] == 99  # /30 timed out
    assert failures(result) == {"503": 1, "TimeoutError": 1}
    latencies = result["latencies_ms"]
    assert max(latencies) >= STALL_S * 1000
    # The stall held one connection only: the requests due meanwhile went out on others.
    assert sorted(latencies)[-2] < STALL_S * 1000
    assert result["peak_in_flight"] >= 2
    assert result["matched"] == 50  # the odd paths
    assert result["cpu_share"] > 0
    assert result["lateness_ms"]["count"] == 100
    assert result["rate_per_s"] == result["completed"] / result["duration_s"]


async def test_the_warm_up_is_sent_but_tallied_apart() -> None:
    released = asyncio.Event()
    server, port = await _server(released)
    async with server:
        result = await run({
            "mode": "open", "host": "127.0.0.1", "port": port, "rate_per_s": 50.0,
            "warmup_s": 0.5, "duration_s": 0.5, "timeout_s": 1.0,
            "requests": [{"method": "GET", "path": f"/{n}"} for n in (1, 2, FAILING)],
        })  # fmt: skip
        released.set()
    assert result["scheduled"] == 25
    assert sum(result["warmup_statuses"].values()) == 25
    assert result["warmup_statuses"]["503"] + result["statuses"]["503"] == 50 // 3
    assert failures(result)["503"] == 50 // 3
