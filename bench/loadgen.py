"""The HTTP load generator: ``python -m bench.loadgen`` reads a JSON spec on stdin and
prints JSON results on stdout.

It runs in its own process so that it never shares the server's event loop or CPU
accounting, speaks plain HTTP/1.1 with keep-alive (:mod:`bench.httpclient`), talks to
loopback addresses only, and is bounded in requests and in time.

Modes:

- ``open``: requests sent at scheduled times at a fixed rate, latency counted from the
  scheduled send time (:mod:`bench.openloop`); the generator's own CPU time reported.
- ``closed``: ``concurrency`` connections, each sending its next request as soon as the
  previous answer arrived, until ``max_requests`` or ``max_seconds``; after
  ``warmup`` requests that are not counted. Reports every latency.
- ``freshness``: a steady background of events posted to ingest at ``events_per_s`` (in
  bodies of ``batch`` events, open loop), and every ``probe_every_s`` a probe: one event
  for a new user, posted, then the user's recommendations polled every
  ``poll_every_s`` until they are personalized. Reports post -> visible per probe.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
from collections import Counter
from typing import Any

from bench.httpclient import Connection, HttpError, Pool, Tally, encode_request, encoded
from bench.openloop import run_open

HARD_LIMIT_S = 600.0


async def _drive(
    connections: list[Connection],
    requests: list[bytes],
    *,
    start: int,
    count: int,
    deadline: float,
    timeout_s: float,
    match: bytes | None,
) -> Tally:
    """Closed loop: every connection sends the next request when its answer arrived."""
    tally = Tally()
    counter = itertools.count(start)
    end = start + count

    async def worker(connection: Connection) -> None:
        while True:
            index = next(counter)
            if index >= end or time.perf_counter() >= deadline:
                return
            raw = requests[index % len(requests)]
            began = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    status, body = await connection.send(raw)
            except (HttpError, TimeoutError) as error:
                tally.errors[type(error).__name__] += 1
                continue
            done = time.perf_counter()
            tally.latencies_ms.append((done - began) * 1000)
            tally.statuses[status] += 1
            tally.last_done = max(tally.last_done, done)
            if match is not None and match in body:
                tally.matched += 1

    await asyncio.gather(*(worker(c) for c in connections))
    return tally


async def run_closed(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], int(spec["port"])
    requests = encoded(spec["requests"], host)
    concurrency = int(spec.get("concurrency", 1))
    timeout_s = float(spec.get("timeout_s", 10.0))
    match = spec["match"].encode() if spec.get("match") else None
    connections = [Connection(host, port) for _ in range(concurrency)]
    warmup = int(spec.get("warmup", 0))
    warm = Tally()
    try:
        if warmup:
            warm = await _drive(
                connections, requests, start=0, count=warmup,
                deadline=time.perf_counter() + float(spec.get("warmup_seconds", 30.0)),
                timeout_s=timeout_s, match=None,
            )  # fmt: skip
        began = time.perf_counter()
        tally = await _drive(
            connections, requests, start=warmup, count=int(spec["max_requests"]),
            deadline=began + float(spec["max_seconds"]), timeout_s=timeout_s, match=match,
        )  # fmt: skip
    finally:
        for connection in connections:
            connection.close()
    elapsed = (tally.last_done or time.perf_counter()) - began
    completed = len(tally.latencies_ms)
    return {
        "mode": "closed",
        "concurrency": concurrency,
        "completed": completed,
        "elapsed_s": elapsed,
        "rate_per_s": completed / elapsed if elapsed > 0 else 0.0,
        "latencies_ms": tally.latencies_ms,
        "statuses": {str(k): v for k, v in tally.statuses.items()},
        "errors": dict(tally.errors),
        "matched": tally.matched,
        "warmup_statuses": {str(k): v for k, v in warm.statuses.items()},
        "warmup_errors": dict(warm.errors),
    }


async def run_freshness(spec: dict[str, Any]) -> dict[str, Any]:
    """Background events at a steady rate, and probes measuring post -> visible."""
    ingest_host, ingest_port = spec["ingest"]["host"], int(spec["ingest"]["port"])
    query_host, query_port = spec["query"]["host"], int(spec["query"]["port"])
    items: list[list[Any]] = spec["items"]  # [item_id, tags]
    run_id = spec["run_id"]
    rate, batch = float(spec["events_per_s"]), int(spec["batch"])
    duration = float(spec["duration_s"])
    probe_every, probe_start = float(spec["probe_every_s"]), float(spec["probe_start_s"])
    poll_every, probe_timeout = float(spec["poll_every_s"]), float(spec["probe_timeout_s"])
    users = int(spec.get("load_users", 600))
    json_type = {"Content-Type": "application/json"}
    load_headers = {**json_type, "X-Attune-Tenant": spec["load_tenant"]}
    probe_headers = {**json_type, "X-Attune-Tenant": spec["probe_tenant"]}
    tenant_only = {"X-Attune-Tenant": spec["probe_tenant"]}
    rng = random.Random(spec.get("seed", 1))

    background = Pool(ingest_host, ingest_port, int(spec.get("connections", 8)))
    probe_posts = Pool(ingest_host, ingest_port, 4)
    polls = Pool(query_host, query_port, 8)
    load = Tally()
    lateness_ms: list[float] = []
    probes: list[dict[str, Any]] = []
    started = time.perf_counter()
    end = started + duration

    def load_body(number: int) -> bytes:
        events = []
        for j in range(batch):
            n = number * batch + j
            item_id, tags = items[rng.randrange(len(items))]
            events.append({
                "event": "rating", "userId": f"load-{n % users}",
                "messageId": f"{run_id}-load-{n}",
                "properties": {"item_id": item_id, "rating": rng.choice((2.0, 3.5, 4.0, 5.0)),
                               "tags": tags},
            })  # fmt: skip
        return json.dumps({"events": events}, separators=(",", ":")).encode()

    async def post_load(number: int, scheduled: float) -> None:
        raw = encode_request("POST", "/v1/events", ingest_host, load_headers, load_body(number))
        began = time.perf_counter()
        lateness_ms.append((began - scheduled) * 1000)
        try:
            status, _ = await background.send(raw, 10.0)
        except (HttpError, TimeoutError) as error:
            load.errors[type(error).__name__] += 1
            return
        load.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
        load.statuses[status] += 1

    async def probe(number: int) -> None:
        user = f"{run_id}-probe-{number}"
        item_id, tags = items[rng.randrange(len(items))]
        body = {"events": [{"event": "like", "userId": user, "messageId": f"{run_id}-p{number}",
                            "properties": {"item_id": item_id, "tags": tags}}]}  # fmt: skip
        post = encode_request(
            "POST", "/v1/events", ingest_host, probe_headers,
            json.dumps(body, separators=(",", ":")).encode(),
        )  # fmt: skip
        poll = encode_request(
            "GET", f"/v1/users/{user}/recommendations?limit=10", query_host, tenant_only
        )
        result: dict[str, Any] = {"user": user, "item_id": item_id}
        failed_polls: Counter[str] = Counter()
        began = time.perf_counter()
        try:
            status, _ = await probe_posts.send(post, 10.0)
            result["post_ms"] = (time.perf_counter() - began) * 1000
            result["post_status"] = status
            polls_sent = 0
            while time.perf_counter() - began < probe_timeout:
                sent = time.perf_counter()
                status, answer = await polls.send(poll, 10.0)
                polls_sent += 1
                if not 200 <= status < 300:
                    failed_polls[str(status)] += 1
                if b'"strategy":"personalized"' in answer:
                    now = time.perf_counter()
                    result["visible_ms"] = (now - began) * 1000
                    result["visible_sent_ms"] = (sent - began) * 1000
                    break
                await asyncio.sleep(poll_every)
            result["polls"] = polls_sent
        except (HttpError, TimeoutError) as error:
            result["error"] = f"{type(error).__name__}: {error}"
        if failed_polls:
            result["poll_statuses"] = dict(failed_polls)
        probes.append(result)

    async def background_loop() -> None:
        tasks = []
        for number in itertools.count():
            scheduled = started + number * batch / rate
            if scheduled >= end:
                break
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(post_load(number, scheduled)))
        await asyncio.gather(*tasks)

    async def probe_loop() -> None:
        tasks = []
        for number in itertools.count():
            scheduled = started + probe_start + number * probe_every
            if scheduled >= end:
                break
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(probe(number)))
        await asyncio.gather(*tasks)

    try:
        await asyncio.gather(background_loop(), probe_loop())
    finally:
        for pool in (background, probe_posts, polls):
            pool.close()
    elapsed = time.perf_counter() - started
    accepted = load.statuses.get(202, 0) * batch
    return {
        "mode": "freshness",
        "elapsed_s": elapsed,
        "probes": probes,
        "load": {
            "bodies": sum(load.statuses.values()),
            "events_accepted": accepted,
            "events_per_s": accepted / duration if duration else 0.0,
            "latencies_ms": load.latencies_ms,
            "lateness_ms": lateness_ms,
            "statuses": {str(k): v for k, v in load.statuses.items()},
            "errors": dict(load.errors),
        },
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    mode = spec.get("mode", "closed")
    async with asyncio.timeout(float(spec.get("hard_limit_s", HARD_LIMIT_S))):
        if mode == "open":
            return await run_open(spec)
        if mode == "closed":
            return await run_closed(spec)
        if mode == "freshness":
            return await run_freshness(spec)
    raise ValueError(f"unknown mode {mode!r}")


def main() -> None:
    spec = json.load(sys.stdin)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        runner = asyncio.run
    result = runner(run(spec))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()


__all__ = ["run", "run_closed", "run_freshness"]
