"""Freshness: an event posted -> visible in the user's recommendations, at a steady
1,000 events/s.

``attune run ingest``, ``attune run usermodel`` and ``attune run query`` (on the
headline-scale index) run as three processes, as in production. The usermodel consumer
first catches up with what earlier phases left on the events topic. Then the load
generator posts a steady background of rating events (tenant ``bench-load``, bodies of
10, open loop) and, every ``PROBE_EVERY_S``, a probe: a "like" of a MovieLens film by a
user never seen before, then that user's recommendations polled every 10 ms until their
strategy turns from trending to personalized. Freshness is the time from sending the
POST to receiving the first personalized answer.

Raw limit: the Kafka hop alone, produce (acks=all) -> a consumer subscribed exactly as
the services subscribe (``batch_subscriber``), on a scratch topic, with nothing else
running. Beside it, in the JSON, the same hop with a plain aiokafka consumer whose
``fetch_max_wait_ms`` is 50 ms: what the consumers' fetch wait costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from bench.context import Context
from bench.query import build_index
from bench.results import Figure, Target
from bench.services import Service, metric, run_loadgen, wait_for_metric
from bench.stats import summarize
from bench.workloads import LOAD_TENANT
from services.app.datasets import rich_progress
from services.common.consumer import batch_subscriber
from services.common.kafka import aiokafka_options, make_broker
from services.common.records import raw_records

TARGET = Target("at_most", 200.0, "p99 <= 200 ms")
BATCH = 10
PROBE_EVERY_S = 0.25
POLL_EVERY_S = 0.01
HOP_TOPIC = "bench.kafka-hop"
HOP_MARKERS = 60


async def kafka_hop(ctx: Context, *, fetch_max_wait_ms: int | None = None) -> list[float]:
    """Milliseconds from producing a record (acks=all) to a consumer receiving it, for
    ``HOP_MARKERS`` records 50 ms apart: through ``batch_subscriber`` (the services'
    consumer), or a plain aiokafka consumer with ``fetch_max_wait_ms``."""
    settings = ctx.settings
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        if HOP_TOPIC not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(HOP_TOPIC, 6, 1)])
    finally:
        await admin.close()
    received: list[tuple[bytes, float]] = []
    group = f"bench-hop-{ctx.run_id}-{fetch_max_wait_ms}"
    broker = make_broker(settings, logger=None)
    plain: AIOKafkaConsumer | None = None
    reader: asyncio.Task[None] | None = None
    if fetch_max_wait_ms is None:
        router = KafkaRouter()

        @batch_subscriber(router, HOP_TOPIC, settings, group, description="bench: Kafka hop")
        async def on_batch(message: KafkaMessage) -> None:
            now = time.perf_counter()
            received.extend((record.value or b"", now) for record in raw_records(message))

        broker.include_router(router)
        await broker.start()
    else:
        # No group (no join, no rebalance): every partition assigned, from its end.
        plain = AIOKafkaConsumer(
            **aiokafka_options(settings), fetch_max_wait_ms=fetch_max_wait_ms,
            auto_offset_reset="latest", enable_auto_commit=False,
        )  # fmt: skip
        await plain.start()
        plain.assign([TopicPartition(HOP_TOPIC, p) for p in range(6)])
        await plain.seek_to_end()

        async def read(consumer: AIOKafkaConsumer) -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=1_000)
                now = time.perf_counter()
                for records in batch.values():
                    received.extend((record.value or b"", now) for record in records)

        reader = asyncio.create_task(read(plain))
    producer = AIOKafkaProducer(
        **aiokafka_options(settings), acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
    )  # fmt: skip
    await producer.start()
    try:
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:  # until the group has joined
            await producer.send_and_wait(HOP_TOPIC, b"warm-up", key=b"w")
            await asyncio.sleep(0.1)
        for n in range(HOP_MARKERS):
            sent = f"m {time.perf_counter()!r}".encode()
            await producer.send_and_wait(HOP_TOPIC, sent, key=str(n).encode())
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if sum(value.startswith(b"m ") for value, _ in received) >= HOP_MARKERS:
                break
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
        if reader is not None:
            reader.cancel()
        if plain is not None:
            await plain.stop()
        await broker.stop()
    return [
        (at - float(value.split()[1])) * 1000 for value, at in received if value.startswith(b"m ")
    ]


def freshness_failures(probes: list[dict[str, Any]], load: dict[str, Any]) -> dict[str, int]:
    """Each probe that failed, by why (an error, its POST not 2xx, never visible before
    its deadline), poll answers outside 2xx, and the background's failed POSTs."""
    found: Counter[str] = Counter()
    for probe in probes:
        status = int(probe.get("post_status", 200))
        if "error" in probe:
            found[f"probe {str(probe['error']).split(':')[0]}"] += 1
        elif not 200 <= status < 300:
            found[f"probe POST {status}"] += 1
        elif "visible_ms" not in probe:
            found["probe never visible"] += 1
        for polled, count in probe.get("poll_statuses", {}).items():
            found[f"poll {polled}"] += count
    for status, count in load.get("statuses", {}).items():
        if not str(status).startswith("2"):
            found[f"background {status}"] += count
    for error, count in load.get("errors", {}).items():
        found[f"background {error}"] += count
    return dict(found)


def _spec(
    ctx: Context, ingest: Service, query: Service, seconds: float, run: str
) -> dict[str, Any]:
    return {
        "mode": "freshness",
        "ingest": {"host": "127.0.0.1", "port": ingest.port},
        "query": {"host": "127.0.0.1", "port": query.port},
        "items": [[item.item_id, item.tags] for item in ctx.data.items],
        "run_id": f"{ctx.run_id}-{run}",
        "events_per_s": ctx.sizes.freshness_events_per_s,
        "batch": BATCH,
        "duration_s": seconds,
        "probe_every_s": PROBE_EVERY_S,
        "probe_start_s": min(2.0, seconds / 4),
        "poll_every_s": POLL_EVERY_S,
        "probe_timeout_s": 10.0,
        "load_tenant": LOAD_TENANT,
        "probe_tenant": ctx.tenant,
        "connections": 8,
    }


async def run(ctx: Context) -> None:
    rate = ctx.sizes.freshness_events_per_s
    ctx.say(f"[bold]freshness[/bold]: event posted -> visible in recommendations at {rate:,.0f}/s")
    path = await build_index(ctx, ctx.sizes.headline_scale)
    hop = summarize(await kafka_hop(ctx))
    hop_50 = summarize(await kafka_hop(ctx, fetch_max_wait_ms=50))
    ctx.say(
        f"  the Kafka hop alone: p50 {hop.get('p50', 0):.0f} / p99 {hop.get('p99', 0):.0f} ms "
        f"(fetch wait 50 ms: p50 {hop_50.get('p50', 0):.0f} / p99 {hop_50.get('p99', 0):.0f} ms)"
    )
    group = f"{ctx.settings.kafka_group_prefix}-usermodel"
    consumed = lambda s: metric(s, "attune_consumer_messages_total", consumer=group)  # noqa: E731
    query_settings = ctx.settings.model_copy(update={"vector_index_path": path})
    async with (
        ctx.service("query", query_settings) as query,
        ctx.service("usermodel") as usermodel,
        ctx.service("ingest") as ingest,
    ):
        backlog = ctx.events_on_topic - ctx.events_folded
        if backlog > 0:
            with rich_progress("usermodel catching up", console=ctx.console) as progress:
                progress(0, backlog)
                caught = await wait_for_metric(
                    usermodel, consumed, at_least=backlog, deadline_s=backlog / 1_000 + 60
                )
                progress(int(min(caught, backlog)), backlog)
        seconds = ctx.sizes.freshness_seconds
        result = await run_loadgen(
            _spec(ctx, ingest, query, seconds, "fresh"), timeout_s=seconds + 60
        )
        probes = result["probes"]
        visible = [p["visible_ms"] for p in probes if "visible_ms" in p]
        load = result["load"]
        summary = summarize(visible)
        figure = ctx.results.add(Figure(
            key="freshness",
            title=f"freshness: event posted -> visible in recommendations, at a steady "
            f"{rate:,.0f} events/s",
            measured=summary.get("p99"), unit="ms", target=TARGET, raw=hop.get("p99"),
            raw_label="the Kafka hop alone, produce -> the services' consumer, p99",
            failures=freshness_failures(probes, load),
            details={
                "kafka_hop_ms": hop,
                "kafka_hop_ms_fetch_wait_50": hop_50,
                "visible_ms": summary,
                "probes": len(probes),
                "not_visible": len(probes) - len(visible),
                "probe_errors": [p["error"] for p in probes if "error" in p][:5],
                "post_ms": summarize([p["post_ms"] for p in probes if "post_ms" in p]),
                "poll_every_ms": POLL_EVERY_S * 1000,
                "probe_every_ms": PROBE_EVERY_S * 1000,
                "body_events": BATCH,
                "background_events_per_s": load["events_per_s"],
                "background_post_ms": summarize(load["latencies_ms"]),
                "background_lateness_ms": summarize(load["lateness_ms"]),
                "background_statuses": load["statuses"],
                "background_errors": load["errors"],
            },
        ))  # fmt: skip
        ctx.results.series["freshness"] = [round(v, 2) for v in visible]
        if summary.get("count"):
            ctx.say(
                f"  {len(visible)} of {len(probes)} probes visible: p50 {summary['p50']:.0f} ms, "
                f"p99 {summary['p99']:.0f} ms; background {load['events_per_s']:,.0f} events/s"
            )
        if figure.met is False and ctx.profiles:
            seconds = ctx.sizes.profile_seconds + 2
            load_task = asyncio.ensure_future(
                run_loadgen(_spec(ctx, ingest, query, seconds, "profile"), timeout_s=seconds + 60)
            )
            await ctx.profile(
                figure, usermodel, "attune run usermodel at 1,000 events/s", load_task
            )


__all__ = ["freshness_failures", "run"]
