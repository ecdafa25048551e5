"""User-model events/s, live, next to Redis doing the same commands alone.

Three passes over the same MovieLens ratings (timestamp order), each in batches of the
consumer's size:

1. the fold alone: ``UserModelFolder.fold`` on decoded events, no Kafka (a breakdown);
   every Redis pipeline it sends is recorded;
2. the raw limit: those recorded pipelines (the same EVALSHA calls on the same keys
   with the same arguments, each after the same ``SCRIPT EXISTS``) replayed on an
   emptied namespace as the fold sent them: a batch's lanes concurrently, each lane's
   pipelines in order. Redis and its Lua work with no Kafka and no Python fold;
3. the figure: the events produced to the events topic, then ``attune run usermodel``
   folding them live, timed from the last /metrics scrape where it had read nothing to
   the first where it had folded them all (see ``ConsumerClock``);
4. the replay: the whole events topic folded again into a fresh namespace, as
   ``attune replay usermodel`` does, timed, and its digest compared with the live one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from bench.context import Context
from bench.results import Figure, Target
from bench.services import (
    ConsumerRun,
    Sample,
    follow_consumer,
    metric,
    scrape,
    wait_for_metric,
)
from bench.workloads import envelopes
from schemas.events import BehaviourEvent
from services.app.bootstrap import tune_gc
from services.app.datasets import produce, rich_progress
from services.common.redis import make_redis
from services.common.replay import ReadStats
from services.common.userstore.digest import digest_namespace
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.namespace import Namespaces
from services.usermodel.fold import FoldConfig, UserModelFolder
from services.usermodel.replay import rebuild_namespace

TARGET = Target("at_least", 25_000, ">= 25,000 events/s per process")
REPLAY_TARGET = Target("at_least", 20_000, ">= 20,000 events/s, same digest as live")
PARTITIONS = 6
CONSUMED = "attune_consumer_messages_total"

Commands = list[tuple[tuple[Any, ...], dict[str, Any]]]


@dataclass
class RecordedPipeline:
    """One pipeline as the fold executed it: its commands, and the scripts the client
    makes sure of first (``SCRIPT EXISTS``, one more round trip, as it does live)."""

    commands: Commands
    scripts: list[Any]


@dataclass
class Recorded:
    """The fold's pipelines, batch by batch; within a batch, lane by lane (each lane is
    the task that ran it), in the order each lane executed them."""

    batches: list[dict[int, list[RecordedPipeline]]] = field(default_factory=list)

    def next_batch(self) -> None:
        self.batches.append({})

    def add(self, pipeline: RecordedPipeline) -> None:
        if not self.batches:
            self.next_batch()
        lane = id(asyncio.current_task())
        self.batches[-1].setdefault(lane, []).append(pipeline)

    @property
    def pipelines(self) -> int:
        return sum(len(lane) for batch in self.batches for lane in batch.values())

    @property
    def commands(self) -> int:
        return sum(
            len(pipe.commands) for batch in self.batches for lane in batch.values() for pipe in lane
        )


def record_pipelines(redis: Redis, log: Recorded) -> None:
    """Make every pipeline of ``redis`` add its commands to ``log`` when executed."""
    original = redis.pipeline

    def pipeline(transaction: bool = True, shard_hint: str | None = None) -> Any:
        pipe = original(transaction=transaction, shard_hint=shard_hint)
        execute = pipe.execute

        async def recorded(raise_on_error: bool = True) -> list[Any]:
            commands = [(tuple(args), dict(options)) for args, options in pipe.command_stack]
            log.add(RecordedPipeline(commands, list(pipe.scripts)))
            return await execute(raise_on_error=raise_on_error)

        setattr(pipe, "execute", recorded)  # noqa: B010 - an instance attribute on purpose
        return pipe

    setattr(redis, "pipeline", pipeline)  # noqa: B010


async def replay(redis: Redis, log: Recorded) -> None:
    """Send the recorded pipelines as the fold sent them: a batch's lanes concurrently,
    each on its own connection, its pipelines in order; batch after batch."""

    async def lane(pipelines: list[RecordedPipeline]) -> None:
        for recorded in pipelines:
            pipe = redis.pipeline(transaction=False)
            pipe.scripts.update(recorded.scripts)
            for args, options in recorded.commands:
                pipe.execute_command(*args, **options)
            await pipe.execute()

    for batch in log.batches:
        await asyncio.gather(*(lane(pipelines) for pipelines in batch.values()))


async def redis_cpu_seconds(redis: Redis) -> float:
    """CPU seconds the Redis server's main thread has used (where commands and Lua run)."""
    info = await redis.info("cpu")
    user = info.get("used_cpu_user_main_thread", info.get("used_cpu_user", 0.0))
    system = info.get("used_cpu_sys_main_thread", info.get("used_cpu_sys", 0.0))
    return float(user) + float(system)


async def top_commands(redis: Redis, top: int = 10) -> list[dict[str, Any]]:
    """Commands by server time since the last CONFIG RESETSTAT (those run inside Lua
    scripts counted too)."""
    stats = await redis.info("commandstats")
    rows: list[dict[str, Any]] = [
        {"command": name.removeprefix("cmdstat_"), "calls": int(v["calls"]),
         "usec": int(v["usec"]), "usec_per_call": float(v["usec_per_call"])}
        for name, v in stats.items()
        if isinstance(v, dict) and "usec" in v
    ]  # fmt: skip
    return sorted(rows, key=lambda row: -row["usec"])[:top]


async def delete_namespace(redis: Redis, namespace: str) -> int:
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{namespace}:*", count=1_000):
        batch.append(key)
        if len(batch) >= 1_000:
            deleted += await redis.unlink(*batch)
            batch = []
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted


async def fold_live(
    ctx: Context, events: list[BehaviourEvent]
) -> tuple[ConsumerRun, list[Sample], float]:
    """Produce ``events`` to the events topic, then fold them with ``attune run usermodel``
    (the default group and namespace); return its timing, final /metrics, produce time."""
    count = len(events)
    began = time.perf_counter()
    with rich_progress("events -> Kafka", console=ctx.console) as progress:
        await produce(ctx.settings, events, progress=progress)
    produce_s = time.perf_counter() - began
    ctx.events_on_topic += count
    group = f"{ctx.settings.kafka_group_prefix}-usermodel"
    async with ctx.service("usermodel") as service:
        with rich_progress("attune run usermodel", console=ctx.console) as progress:
            consumer = await follow_consumer(
                service,
                started_metric=lambda s: metric(s, CONSUMED, consumer=group),
                done_metric=lambda s: metric(s, "attune_usermodel_events_total"),
                target=count,
                deadline_s=count / 500 + 120,
                progress=progress,
            )
        samples = await scrape(service)
    ctx.events_folded += int(consumer.done)
    return consumer, samples, produce_s


async def fold_live_only(ctx: Context) -> None:
    """The MovieLens users' models, for the query figures, without measuring."""
    await fold_live(ctx, ctx.data.events)


async def run(ctx: Context) -> None:
    ctx.say("[bold]usermodel[/bold]: Kafka -> fold (Lua) -> Redis vs Redis alone")
    events = ctx.data.events[: ctx.sizes.usermodel_events]
    count = len(events)
    batch = ctx.settings.consumer_max_records
    config = FoldConfig.from_settings(ctx.settings)
    decoded = envelopes(events, PARTITIONS)

    redis = make_redis(ctx.settings)
    try:
        namespace = f"bench-fold-{ctx.run_id}"
        log = Recorded()
        recording = make_redis(ctx.settings)
        record_pipelines(recording, log)
        folder = UserModelFolder(recording, config)
        keys = UserModelKeys(namespace)
        with rich_progress("fold alone (no Kafka)", console=ctx.console) as progress:
            began = time.perf_counter()
            for start in range(0, count, batch):
                log.next_batch()
                await folder.fold(decoded[start : start + batch], keys)
                progress(min(start + batch, count), count)
            fold_s = time.perf_counter() - began
        await recording.aclose()
        await delete_namespace(redis, namespace)

        commands = log.commands
        await redis.config_resetstat()
        cpu_before = await redis_cpu_seconds(redis)
        began = time.perf_counter()
        await replay(redis, log)
        replay_s = time.perf_counter() - began
        replay_cpu = await redis_cpu_seconds(redis) - cpu_before
        command_stats = await top_commands(redis)
        await delete_namespace(redis, namespace)
        raw_rate, fold_rate = count / replay_s, count / fold_s
        ctx.say(
            f"  Redis alone (the same {commands:,} script calls, pipelined): {raw_rate:,.0f} "
            f"events/s (Redis busy {replay_cpu / replay_s:.0%}); fold alone: "
            f"{fold_rate:,.0f} events/s"
        )
    finally:
        await redis.aclose()

    redis = make_redis(ctx.settings)
    try:
        cpu_before = await redis_cpu_seconds(redis)
        consumer, samples, produce_s = await fold_live(ctx, events)
        live_cpu = await redis_cpu_seconds(redis) - cpu_before
    finally:
        await redis.aclose()
    group = f"{ctx.settings.kafka_group_prefix}-usermodel"
    ctx.results.notes.append(
        f"bulk load (services.app.datasets.produce) of {count:,} MovieLens ratings: "
        f"{count / produce_s:,.0f} events/s"
    )
    rate = consumer.rate
    batches = metric(samples, "attune_consumer_batch_size_count", consumer=group)
    batch_s = metric(samples, "attune_consumer_batch_duration_seconds_sum", consumer=group)
    figure = ctx.results.add(
        Figure(
            key="usermodel",
            title="usermodel events/s, live",
            measured=rate,
            unit="events/s",
            raw=raw_rate,
            raw_label="Redis pipeline of the same commands, no Kafka, no Python fold",
            target=TARGET,
            failures=consumer.failures,
            details={
                "events": count,
                "events_timed": consumer.counted,
                "consumer_seconds": consumer.seconds,
                "timed_out": consumer.timed_out,
                "batches": batches,
                "mean_batch": count / batches if batches else None,
                "batch_seconds_in_service": batch_s,
                "fold_alone_events_per_s": fold_rate,
                "redis_commands": commands,
                "redis_pipelines": log.pipelines,
                "redis_cpu_s_replay": replay_cpu,
                "redis_bound_events_per_s": count / replay_cpu if replay_cpu else None,
                "redis_cpu_s_live": live_cpu,
                "redis_busy_share_live": live_cpu / consumer.seconds if consumer.seconds else None,
                "redis_commands_by_time": command_stats,
                "produce_msgs_per_s": count / produce_s,
            },
        )
    )
    ctx.say(
        f"  attune run usermodel: {rate or 0:,.0f} events/s (Redis busy "
        f"{live_cpu / consumer.seconds:.0%})"
    )
    await replay_figure(ctx, fold_rate)
    if figure.met is False and ctx.profiles:
        settings = ctx.settings.model_copy(
            update={
                "kafka_group_prefix": f"bench-um-profile-{ctx.run_id}",
                "redis_namespace": f"bench-profile-{ctx.run_id}",
            }
        )
        profile_group = f"{settings.kafka_group_prefix}-usermodel"
        async with ctx.service("usermodel", settings) as service:
            await wait_for_metric(
                service,
                lambda s: metric(s, "attune_consumer_messages_total", consumer=profile_group),
                deadline_s=60,
            )
            await ctx.profile(figure, service, "attune run usermodel folding MovieLens ratings")
        redis = make_redis(ctx.settings)
        try:
            await delete_namespace(redis, settings.redis_namespace)
        finally:
            await redis.aclose()


def replay_verdict(
    stats: ReadStats, rejected: int, live: str, replayed: str, fold_rate: float, *,
    digest_lines: int,
) -> Figure:  # fmt: skip
    """The replay's figure: its rate, and a digest that differs from the live fold's
    counted as a failure (the target is then not met, whatever the rate)."""
    same = live == replayed
    return Figure(
        key="usermodel_replay",
        title="usermodel replay events/s (fresh namespace, whole topic)",
        measured=stats.rate,
        unit="events/s",
        raw=fold_rate,
        raw_label="the fold alone on decoded events, no Kafka",
        target=REPLAY_TARGET,
        failures={} if same else {"digest differs from the live fold's": 1},
        details={
            "records": stats.records,
            "seconds": stats.seconds,
            "rejected": rejected,
            "digest_live": live,
            "digest_replay": replayed,
            "same_digest": same,
            "digest_lines": digest_lines,
        },
    )


async def replay_figure(ctx: Context, fold_rate: float) -> None:
    """Fold the whole events topic again into a fresh namespace (what ``attune replay
    usermodel`` does before it switches) and compare its digest with the live model's."""
    config = FoldConfig.from_settings(ctx.settings)
    tune_gc()  # as `attune replay` does
    redis = make_redis(ctx.settings)
    namespace = f"bench-replay-{ctx.run_id}"
    try:
        live = await Namespaces(redis, ctx.settings.redis_namespace).active()
        with rich_progress("replay -> fresh namespace", console=ctx.console) as progress:
            stats, rejected = await rebuild_namespace(
                ctx.settings, redis, namespace, progress=progress
            )
        live_digest = await digest_namespace(redis, UserModelKeys(live), config.decay)
        replay_digest = await digest_namespace(redis, UserModelKeys(namespace), config.decay)
        await delete_namespace(redis, namespace)
    finally:
        await redis.aclose()
    figure = ctx.results.add(
        replay_verdict(stats, rejected, live_digest.hexdigest(), replay_digest.hexdigest(),
                       fold_rate, digest_lines=len(live_digest.lines))
    )  # fmt: skip
    same = figure.details["same_digest"]
    ctx.say(
        f"  replay: {stats.records:,} events in {stats.seconds:.1f} s ({stats.rate:,.0f} "
        f"events/s); digest {'equal to' if same else '[red]DIFFERENT from[/red]'} the live "
        f"fold's ({live_digest.hexdigest()[:12]})"
    )


__all__ = [
    "Recorded",
    "RecordedPipeline",
    "delete_namespace",
    "fold_live",
    "fold_live_only",
    "record_pipelines",
    "replay",
    "replay_figure",
    "replay_verdict",
    "run",
]
