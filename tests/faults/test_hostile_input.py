"""Hostile input against `attune run` processes on the embedded stack, through HTTP and
straight to the topics, with good messages sent alongside.

Afterwards: no answer was a 5xx; each bad message was answered with a 4xx or
dead-lettered with its reason; the good tenant's user model equals a clean run of the
good messages alone; every good item is served; the hostile user's Redis footprint
stays within its bounds. The run's figures are printed (``pytest -s`` shows them).

The index is one process's (Qdrant Edge locks its folder), so the embedder runs first
and the query process opens the index once the embedder has stopped."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from schemas.events import BehaviourEvent
from schemas.topics import CONTENT, EVENTS
from services.app.embedded import EmbeddedStack, free_port
from services.common.digest import Digest
from services.common.settings import Settings
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.namespace import Namespaces
from tests.faults.conftest import (
    attune_process,
    caught_up,
    eventually,
    folded_state,
    live_state,
    raw_producer,
    read_dead_letters,
    synthetic_events,
)

GOOD, HOSTILE, META = "good", "hostile", "meta"
WRITE = {t: f"write-key-of-{t}-0123456789" for t in (GOOD, HOSTILE, META)}
READ = {t: f"read-key-of-{t}-0123456789" for t in (GOOD, HOSTILE)}
KEYS_ENV = {
    "ATTUNE_WRITE_KEYS": json.dumps({t: [k] for t, k in WRITE.items()}),
    "ATTUNE_READ_KEYS": json.dumps({t: [k] for t, k in READ.items()}),
}
HOARDER = "hoarder"  # the hostile user with 10,000 distinct event names
GOOD_ITEMS = [(f"g{n}", f"Good item {n}", f"A plain description of item {n}.") for n in range(12)]
EVENT_NAME_FLOOD = 10_000
MEMORY_BOUNDS = Path(__file__).parents[2] / "docs" / "benchmarks" / "memory-bounds.json"


@dataclass
class Answers:
    """Every HTTP answer of the run, by status."""

    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def check(self, what: str, response: httpx.Response, *expected: int) -> httpx.Response:
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.server_errors.append(f"{what}: {response.status_code} {response.text[:300]}")
        elif expected and response.status_code not in expected:
            self.unexpected.append(
                f"{what}: {response.status_code} (expected {expected}) {response.text[:300]}"
            )
        return response


def writer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {WRITE[tenant]}"}


def reader(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {READ[tenant]}"}


def event(user: str, message_id: str, **fields: Any) -> dict[str, Any]:
    """An event as a client posts it (ingest adds the tenant)."""
    return {
        "event": "view",
        "userId": user,
        "messageId": message_id,
        "timestamp": "2024-03-01T12:00:00Z",
        "properties": {"item_id": "g1"},
        **fields,
    }


def raw_event(user: str, message_id: str, **fields: Any) -> bytes:
    """An event as a producer that bypasses ingest writes it to the topic."""
    return json.dumps({**event(user, message_id, **fields), "tenant": HOSTILE}).encode()


def as_json(events: Sequence[BehaviourEvent]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json", by_alias=True, exclude={"tenant"}) for e in events]


@contextmanager
def http_service(
    service: str, settings: Settings, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.AsyncClient]]:
    port = free_port()
    with attune_process(service, settings, log, port=port, extra_env=KEYS_ENV) as process:
        yield process, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)


async def ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


def metric_values(text: str, name: str, **labels: str) -> list[float]:
    """The values of ``name``'s samples whose labels include ``labels``."""
    values = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        sample, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in sample for key, wanted in labels.items()):
            values.append(float(value))
    return values


async def embedder_caught_up(client: httpx.AsyncClient, records: int) -> bool:
    """The embedder has read at least ``records`` content messages and its last batch on
    every partition it read reached the partition's end."""
    try:
        text = (await client.get("/metrics")).text
    except httpx.TransportError:  # still loading the model
        return False
    read = metric_values(text, "attune_consumer_messages_total", topic=CONTENT.name)
    lags = metric_values(text, "attune_consumer_lag", topic=CONTENT.name)
    return sum(read) >= records and bool(lags) and not any(lags)


def tenant_lines(digest: Digest, tenant: str) -> Digest:
    """The facts of one tenant (keys carry ``{tenant}`` or ``{tenant/user}``)."""
    marks = (f"{{{tenant}}}", f"{{{tenant}/")
    kept = Digest()
    kept.lines = sorted(line for line in digest.lines if any(m in line for m in marks))
    return kept


async def user_footprint(
    redis: Redis, settings: Settings, tenant: str, user: str
) -> dict[str, Any]:
    """Members and bytes (MEMORY USAGE) of each of one user's keys."""
    keys = UserModelKeys(await Namespaces(redis, settings.redis_namespace, ttl_s=0).active())
    footprint: dict[str, Any] = {"bytes": 0, "members": {}}
    for key in keys.user(tenant, user).for_fold():
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        size = {
            "hash": redis.hlen,
            "zset": redis.zcard,
            "list": redis.llen,
            "set": redis.scard,
        }.get(kind)
        footprint["members"][key.rsplit(":", 1)[-1]] = await size(key) if size else 0
        footprint["bytes"] += await redis.memory_usage(key) or 0
    return footprint


async def send_http_traffic(
    ingest: httpx.AsyncClient, answers: Answers, good_events: Sequence[BehaviourEvent]
) -> int:
    """Good and hostile requests, interleaved; returns how many content items ingest
    accepted (the embedder must read them all)."""
    good, hostile = writer(GOOD), writer(HOSTILE)
    items = [
        {"item_id": i, "title": t, "description": d, "tags": ["good"]} for i, t, d in GOOD_ITEMS
    ]
    answers.check(
        "good content", await ingest.post("/v1/content", json={"items": items}, headers=good), 202
    )
    content_accepted = len(items)
    good_json = as_json(good_events)
    half = len(good_json) // 2
    for start in range(0, half, 500):
        batch = {"events": good_json[start : start + 500]}
        answers.check("good events", await ingest.post("/v1/events", json=batch, headers=good), 202)

    future = event("h1", "h-2050", timestamp="2050-01-01T00:00:00Z")
    answers.check(
        "year 2050",
        await ingest.post("/v1/events", json={"events": [future]}, headers=hostile),
        422,
    )
    past = event("h1", "h-1900", timestamp="1900-01-01T00:00:00Z")
    answers.check(
        "year 1900", await ingest.post("/v1/events", json={"events": [past]}, headers=hostile), 422
    )
    big_context = {"blob": "x" * 1_000_000}
    segment = {
        "batch": [
            {
                "type": "track",
                "event": "view",
                "userId": "h1",
                "messageId": "h-ctx",
                "timestamp": "2024-03-01T12:00:00Z",
            }
        ],
        "context": big_context,
    }
    answers.check(
        "1 MB context", await ingest.post("/v1/batch", json=segment, headers=hostile), 413, 422
    )
    for start in range(0, EVENT_NAME_FLOOD, 1_000):
        flood = [
            event(
                HOARDER,
                f"name-{n}",
                event=f"made-up-event-{n:05d}",
                properties={"item_id": f"nonexistent-{n}", "tags": [f"tag-{n}"]},
            )
            for n in range(start, start + 1_000)
        ]
        answers.check(
            "10,000 event names",
            await ingest.post("/v1/events", json={"events": flood}, headers=hostile),
            202,
        )
    colliding = [
        {"item_id": "watermarks/attune.content", "title": "Not a watermark", "description": "x"},
        {"item_id": "g1", "title": "Hostile copy of g1", "description": "Same id, other tenant."},
    ]
    for tenant, expected in ((META, (202, 422)), (HOSTILE, (202,))):
        response = await ingest.post(
            "/v1/content", json={"items": colliding}, headers=writer(tenant)
        )
        answers.check(f"colliding ids ({tenant})", response, *expected)
        if response.status_code == 202:
            content_accepted += len(colliding)
    odd_users = [
        event(user, f"odd-{n}")
        for n, user in enumerate(["watermarks", "a:b", "}{", "x}:state", "good/u1"])
    ]
    answers.check(
        "odd user ids",
        await ingest.post("/v1/events", json={"events": odd_users}, headers=hostile),
        202,
    )
    one = {"events": [event("u", "m")]}
    for tenant in ("../etc", "Upper Case", "x" * 100, "unknown", GOOD):
        # a tenant named beside the hostile key: malformed, unknown, or another's
        headers = {**hostile, "X-Attune-Tenant": tenant}
        response = await ingest.post("/v1/events", json=one, headers=headers)
        answers.check(f"tenant {tenant[:10]} with the hostile key", response, 400, 403, 422)
    for key in ("no-such-key-0123456789", READ[HOSTILE], ""):
        response = await ingest.post("/v1/events", json=one, headers={"X-API-Key": key})
        answers.check(f"key {key[:10]!r}", response, 401, 403)
    for method in ("BREW", "PROPFIND", "TRACE"):
        response = await ingest.request(method, "/v1/events", headers=hostile)
        answers.check(f"{method} /v1/events", response, 400, 404, 405, 501)
    for start in range(half, len(good_json), 500):
        batch = {"events": good_json[start : start + 500]}
        answers.check("good events", await ingest.post("/v1/events", json=batch, headers=good), 202)
    return content_accepted


async def send_raw_records(settings: Settings) -> None:
    """What a producer that bypasses ingest could write: three records the user model
    must dead-letter (invalid JSON, a year-1900 event, a 1.2 MB context), one the
    embedder must, and a year-2050 event, folded no later than its record time plus
    the allowed clock skew."""
    bad = [
        b"{not json",
        raw_event("r1", "raw-1900", timestamp="1900-01-01T00:00:00Z"),
        raw_event("r1", "raw-ctx", context={"blob": "x" * 1_200_000}),
        raw_event("r1", "raw-2050", timestamp="2050-01-01T00:00:00Z"),
    ]
    async with raw_producer(settings) as producer:
        for value in bad:
            await producer.send_and_wait(EVENTS.name, value, key=b"hostile/r1")
        await producer.send_and_wait(CONTENT.name, b"{not json", key=b"hostile/x")


async def test_hostile_input_breaks_nothing(
    fault_stack: EmbeddedStack, settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    answers = Answers()
    good_events = synthetic_events(2_000, tenant=GOOD, seed=21)
    with (
        http_service("ingest", settings, tmp_path / "ingest.log") as (_, ingest),
        attune_process("usermodel", settings, tmp_path / "usermodel.log"),
        http_service("embedder", settings, tmp_path / "embedder.log") as (embedder, embedder_http),
    ):
        async with ingest, embedder_http:
            await eventually(lambda: ready(ingest), "ingest is ready")
            content_records = await send_http_traffic(ingest, answers, good_events)
            await send_raw_records(settings)
            await eventually(lambda: caught_up(redis, settings), "the user model catches up")
            await eventually(
                lambda: embedder_caught_up(embedder_http, content_records + 1),
                "the embedder catches up",
            )
        embedder.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(embedder.wait, 60) == 0

    letters = await read_dead_letters(settings, 4)
    reasons = Counter((letter.topic, letter.reason) for letter in letters)
    assert reasons == {
        (EVENTS.name, "invalid_json"): 1,
        (EVENTS.name, "schema_violation"): 1,
        (EVENTS.name, "too_large"): 1,
        (CONTENT.name, "invalid_json"): 1,
    }, reasons

    live, clean = (
        await live_state(redis, settings),
        await folded_state(redis, settings, good_events),
    )
    assert clean.lines
    assert tenant_lines(clean, GOOD).lines == sorted(clean.lines)
    assert tenant_lines(live, GOOD).hexdigest() == clean.hexdigest()
    footprint = await user_footprint(redis, settings, HOSTILE, HOARDER)

    with http_service("query", settings, tmp_path / "query.log") as (_, query):
        async with query:
            await eventually(lambda: ready(query), "query is ready")
            for item_id, _, _ in GOOD_ITEMS:
                answers.check(
                    f"good item {item_id}",
                    await query.get(f"/v1/items/{item_id}/similar", headers=reader(GOOD)),
                    200,
                )
            for tenant in (GOOD, HOSTILE):
                headers = reader(tenant)
                answers.check(
                    f"trending {tenant}", await query.get("/v1/trending", headers=headers), 200
                )
            hostile = reader(HOSTILE)
            for user in (HOARDER, "r1", "a:b", "}{"):
                answers.check(
                    f"profile {user}", await query.get(f"/v1/users/{user}", headers=hostile), 200
                )
                answers.check(
                    f"recommendations {user}",
                    await query.get(f"/v1/users/{user}/recommendations", headers=hostile),
                    200,
                )
            crossing = {**hostile, "X-Attune-Tenant": GOOD}
            answers.check(
                "a read key naming another tenant",
                await query.get("/v1/users/u1", headers=crossing),
                403,
            )
            answers.check(
                "a write key on the query API",
                await query.get("/v1/trending", headers=writer(GOOD)),
                403,
            )
            for method in ("BREW", "PROPFIND"):
                answers.check(
                    f"{method} /v1/trending",
                    await query.request(method, "/v1/trending", headers=hostile),
                    400,
                    404,
                    405,
                    501,
                )

    print(
        "\nhostile-input run:",
        json.dumps(
            {
                "http_statuses": dict(sorted(answers.statuses.items())),
                "dead_letters": {f"{t}/{r}": n for (t, r), n in sorted(reasons.items())},
                "good_tenant_digest": tenant_lines(live, GOOD).hexdigest(),
                "hoarder_keys": footprint,
            },
            indent=2,
        ),
    )
    assert not answers.server_errors, answers.server_errors
    assert not answers.unexpected, answers.unexpected
    assert_within_bounds(footprint, settings)


def assert_within_bounds(footprint: dict[str, Any], settings: Settings) -> None:
    """The hoarder's keys hold no more than the caps allow and take no more memory than
    the documented worst case (docs/benchmarks/memory-bounds.json, written by
    ``python -m bench.memory`` for a user crafted to take the most)."""
    members = footprint["members"]
    assert members["events"] <= settings.max_event_names + 1  # the rest count as (other)
    assert members["tags"] <= settings.max_tags_per_user
    assert members["recent"] <= settings.recent_items_limit
    assert members["seen"] <= settings.dedupe_max_ids
    documented = json.loads(MEMORY_BOUNDS.read_text())["hostile_user"]["bytes"]
    assert footprint["bytes"] <= documented, (footprint["bytes"], documented)
