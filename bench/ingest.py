"""Ingest events/s accepted over HTTP, next to aiokafka producing the same events.

- Figure: ``attune run ingest`` (uvicorn, one process) receiving ``POST /v1/events``
  bodies of 100 MovieLens ratings from the load generator (``ingest_connections``
  keep-alive connections, closed loop); every 202 means the broker stored all 100.
- Raw limit: one aiokafka producer with the ingest's producer settings (acks=all)
  sending the same events, already serialized, in the same groups of 100 with as many
  groups in flight as the load generator has connections.

The events are re-keyed to the tenant ``bench-ingest`` so that the MovieLens users'
models are not touched when the usermodel consumer later reads them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.context import Context
from bench.httpclient import failures
from bench.results import Figure, Target
from bench.services import Service, run_loadgen
from bench.stats import summarize
from bench.workloads import INGEST_TENANT, event_batches, records, retenanted
from services.common.kafka import aiokafka_options

TARGET = Target("ratio_at_least", 0.5, ">= 0.5 x raw")
BATCH = 100
WARMUP_BODIES = 20


def _spec(service: Service, bodies: list[str], *, warmup: int, count: int, seconds: float,
          concurrency: int) -> dict[str, Any]:  # fmt: skip
    headers = {"Content-Type": "application/json", "X-Attune-Tenant": INGEST_TENANT}
    return {
        "mode": "closed",
        "host": "127.0.0.1",
        "port": service.port,
        "requests": [
            {"method": "POST", "path": "/v1/events", "headers": headers, "body": body}
            for body in bodies
        ],
        "concurrency": concurrency,
        "warmup": warmup,
        "max_requests": count,
        "max_seconds": seconds,
        "timeout_s": 30.0,
    }


async def produce_raw(
    ctx: Context, values: list[tuple[str, bytes, bytes]], in_flight: int
) -> float:
    """Seconds for one aiokafka producer to have every record acknowledged, ``BATCH`` at
    a time per task, ``in_flight`` tasks."""
    settings = ctx.settings
    producer = AIOKafkaProducer(
        **aiokafka_options(settings),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        request_timeout_ms=max(40_000, settings.kafka_session_timeout_ms),
    )
    await producer.start()
    try:
        topic, key, value = values[0]
        await producer.send_and_wait(topic, value, key=key)  # connect, fetch metadata
        chunks = iter(range(1, len(values), BATCH))  # shared: each task takes the next

        async def task() -> None:
            for start in chunks:
                futures = [
                    await producer.send(topic, value, key=key)
                    for topic, key, value in values[start : start + BATCH]
                ]
                await asyncio.gather(*futures)

        began = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(in_flight)))
        return time.perf_counter() - began
    finally:
        await producer.stop()


async def run(ctx: Context) -> None:
    ctx.say("[bold]ingest[/bold]: HTTP POST /v1/events (100 per body) vs aiokafka alone")
    count = min(ctx.sizes.ingest_events, len(ctx.data.events)) // BATCH * BATCH
    source = ctx.data.events[:count]
    warm = retenanted(ctx.data.events[-WARMUP_BODIES * BATCH :], INGEST_TENANT, "http-warm-")
    bodies = list(event_batches(warm, BATCH)) + list(
        event_batches(retenanted(source, INGEST_TENANT, "http-"), BATCH)
    )
    concurrency = ctx.sizes.ingest_connections
    figure: Figure | None = None
    async with ctx.service("ingest") as service:
        spec = _spec(service, bodies, warmup=WARMUP_BODIES, count=count // BATCH,
                     seconds=300, concurrency=concurrency)  # fmt: skip
        result = await run_loadgen(spec, timeout_s=330)
        accepted = result["statuses"].get("202", 0) * BATCH
        ctx.events_on_topic += accepted + WARMUP_BODIES * BATCH
        rate = accepted / result["elapsed_s"]
        ctx.say(f"  attune run ingest: {rate:,.0f} events/s accepted ({accepted:,} events)")

        values = records(retenanted(source, INGEST_TENANT, "raw-"))
        raw_s = await produce_raw(ctx, values, concurrency)
        ctx.events_on_topic += len(values)
        raw_rate = (len(values) - 1) / raw_s
        ctx.say(f"  aiokafka alone: {raw_rate:,.0f} events/s")

        figure = ctx.results.add(
            Figure(
                key="ingest",
                title="ingest events/s accepted over HTTP (batches of 100)",
                measured=rate,
                unit="events/s",
                raw=raw_rate,
                raw_label="aiokafka producing the same events directly",
                target=TARGET,
                failures=failures(result),
                details={
                    "events": accepted,
                    "batch": BATCH,
                    "requests": result["completed"],
                    "connections": concurrency,
                    "statuses": result["statuses"],
                    "errors": result["errors"],
                    "request_latency_ms": summarize(result["latencies_ms"]),
                    "requests_per_s": result["rate_per_s"],
                },
            )
        )
        if figure.met is False and ctx.profiles:
            seconds = ctx.sizes.profile_seconds + 2
            spec = _spec(service, bodies, warmup=0, count=100_000, seconds=seconds,
                         concurrency=concurrency)  # fmt: skip
            load = run_loadgen(spec, timeout_s=seconds + 30)
            profiled = asyncio.ensure_future(load)
            await ctx.profile(figure, service, "attune run ingest under POST /v1/events", profiled)
            ctx.events_on_topic += profiled.result()["statuses"].get("202", 0) * BATCH


__all__ = ["produce_raw", "run"]
