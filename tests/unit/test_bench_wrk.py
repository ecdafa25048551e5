"""Saturation with wrk: the Lua script, the parsing of its summary, its failures, a run
against a canned server, and a clear failure (not a crash) without wrk; the bare
ceiling's blend and app."""

from __future__ import annotations

import asyncio
from pathlib import Path

import fakeredis
import httpx
import numpy as np
import pytest

from bench import ceiling, wrk

OUTPUT = """\
Running 5s test @ http://127.0.0.1:8000/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.43ms    2.01ms  18.26ms   74.00%
  7234 requests in 3.10s, 8.47MB read
  Non-2xx or 3xx responses: 5
ATTUNE-WRK {"duration_us":3099532,"requests":7234,"bytes":8882454,"connect":0,"read":2,\
"write":0,"status":4,"timeout":1,"mean_us":3425.9,"p50_us":2913,"p90_us":5026,\
"p99_us":8858,"max_us":18261}
Requests/sec:   2333.90
"""


def test_lua_strings_escape_everything_outside_printable_ascii() -> None:
    assert wrk.lua_string("/v1/users/42") == '"/v1/users/42"'
    assert wrk.lua_string('a"b\\c\né') == '"a\\034b\\092c\\010\\195\\169"'


def test_the_script_rotates_over_every_request() -> None:
    script = wrk.wrk_script([
        {"method": "GET", "path": "/a", "headers": {"X-Attune-Tenant": "movielens"}},
        {"method": "POST", "path": "/b", "body": '{"q":1}'},
    ])  # fmt: skip
    assert '{"GET", "/a", {["X-Attune-Tenant"] = "movielens"}, nil},' in script
    assert '{"POST", "/b", {}, "{\\034q\\034:1}"},' in script
    assert "function request()" in script
    assert wrk.MARKER in script


def test_the_summary_is_parsed_and_failures_counted() -> None:
    result = wrk.parse_output(OUTPUT)
    assert result["requests"] == 7234
    assert result["rate_per_s"] == pytest.approx(7234 / 3.099532)
    assert result["latency_ms"]["p99"] == pytest.approx(8.858)
    assert result["non_2xx"] == 5  # the larger of the summary's and the text's
    assert wrk.wrk_failures(result) == {"non-2xx": 5, "socket read": 2, "socket timeout": 1}
    with pytest.raises(ValueError, match="no summary"):
        wrk.parse_output("Running 5s test\n")


async def test_without_wrk_the_figure_fails_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wrk.shutil, "which", lambda name: None)
    result = await wrk.run_wrk(
        1, [{"method": "GET", "path": "/"}], threads=1, connections=1, seconds=1,
        timeout_s=1, work=tmp_path,
    )  # fmt: skip
    assert "apt-get install wrk" in result["error"]
    assert wrk.wrk_failures(result) == {"wrk not installed": 1}


async def test_wrk_counts_answers_and_non_2xx(tmp_path: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            status = b"404 Not Found" if b" /missing " in head else b"200 OK"
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\n\r\nok")
            try:
                await writer.drain()
            except ConnectionError:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await wrk.run_wrk(
            port, [{"method": "GET", "path": "/ok"}, {"method": "GET", "path": "/missing"}],
            threads=1, connections=2, seconds=1, timeout_s=1, work=tmp_path,
        )  # fmt: skip
    assert "error" not in result, result.get("error")
    assert result["requests"] > 0
    assert 0 < result["non_2xx"] < result["requests"]
    assert wrk.wrk_failures(result)["non-2xx"] == result["non_2xx"]
    assert result["cpu_share"] >= 0


def test_the_ceiling_blends_the_candidates_and_gives_reasons() -> None:
    rng = np.random.default_rng(1)
    raw = ceiling.packed_candidates(rng, 1_000)
    assert len(raw) == ceiling.CANDIDATES * ceiling.PACKED.itemsize
    ids = [f"i{n}" for n in range(1_000)]
    top = ceiling.blend(raw, ids, [f"title {n}" for n in range(1_000)])
    candidates = np.frombuffer(raw, dtype=ceiling.PACKED)
    scores = (candidates["scores"] * ceiling.WEIGHTS).sum(axis=1)
    best = np.argsort(-scores)[: ceiling.LIMIT]
    assert [t["item_id"] for t in top] == [ids[candidates["item"][i]] for i in best]
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert all(len(t["reasons"]) == 2 and set(t["reasons"]) <= set(ceiling.SIGNALS) for t in top)


async def test_the_ceiling_app_fills_its_keys_answers_and_cleans_up() -> None:
    redis = fakeredis.FakeAsyncRedis()
    items = [[str(n), f"Film {n}"] for n in range(ceiling.CANDIDATES * 2)]
    app = ceiling.build_app(lambda: redis, "ceiling:", ["1", "2"], items)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client,
    ):
        assert sorted(await redis.keys("ceiling:*")) == [b"ceiling:1", b"ceiling:2"]
        answer = await client.get("/v1/users/2/recommendations")
        assert answer.status_code == 200
        body = answer.json()
        assert body["strategy"] == "personalized"
        assert len(body["items"]) == ceiling.LIMIT
        assert (await client.get("/v1/users/nobody/recommendations")).status_code == 404
        assert (await client.get("/readyz")).status_code == 200
    assert await redis.keys("ceiling:*") == []
