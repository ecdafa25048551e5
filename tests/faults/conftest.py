"""Fault tests: each gets its own embedded stack (they stop its broker or its Redis),
a synthetic but realistic stream of events, and helpers to wait for the consumer to
catch up and to compare its state with a clean run over the same messages."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.deadletter import DeadLetterRecord
from schemas.events import BehaviourEvent
from schemas.topics import DEAD_LETTER, EVENTS
from services.app.embedded import EmbeddedStack, free_port
from services.common.digest import Digest
from services.common.kafka import aiokafka_options, make_broker
from services.common.offsets import LogProbe, Watermark
from services.common.records import Envelope
from services.common.replay import read_topic
from services.common.settings import Settings
from services.common.userstore.digest import digest_namespace
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.namespace import Namespaces, RedisWatermarks
from services.usermodel.fold import FoldConfig, UserModelFolder
from services.usermodel.replay import rebuild_namespace
from services.usermodel.subscriber import events_consumer
from tests import polling

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 1, tzinfo=UTC)
EVENT_NAMES = ("view", "view", "view", "like", "purchase", "dislike", "rating")


def synthetic_events(
    count: int, *, tenant: str = "faults", users: int = 300, items: int = 400, seed: int = 7
) -> list[BehaviourEvent]:
    """Events with a popularity skew, tags, ratings and a few repeats, in time order."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        item = min(int(rng.paretovariate(1.2)), items)
        name = rng.choice(EVENT_NAMES)
        properties: dict[str, Any] = {"item_id": f"i{item}", "tags": [f"t{item % 17}"]}
        if name == "rating":
            properties["rating"] = rng.choice([1.0, 2.5, 3.0, 4.0, 4.5, 5.0])
        out.append(
            BehaviourEvent.model_validate(
                {
                    "tenant": tenant,
                    "event": name,
                    "userId": f"u{rng.randrange(users)}",
                    "messageId": f"{tenant}-{seed}-{n}",
                    "timestamp": (T0 + timedelta(seconds=30 * n)).isoformat(),
                    "properties": properties,
                }
            )
        )
    return out


@pytest.fixture
async def fault_stack(tmp_path: Path) -> AsyncIterator[EmbeddedStack]:
    async with EmbeddedStack(tmp_path / "stack") as running:
        yield running


@pytest.fixture
def settings(fault_stack: EmbeddedStack, tmp_path: Path) -> Settings:
    return fault_stack.settings().model_copy(
        update={"consumer_max_records": 200, "vector_index_path": tmp_path / "vectors"}
    )


@pytest.fixture
async def redis(fault_stack: EmbeddedStack) -> AsyncIterator[Redis]:
    client = Redis.from_url(fault_stack.redis_url)
    yield client
    await client.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 90) -> None:
    """:func:`tests.polling.eventually` with the fault tests' patience: a dependency
    that is still coming back (a connection refused) means "not yet"."""
    await polling.eventually(
        check, what, within=within, interval=0.2, tolerate=(OSError, RedisConnectionError)
    )


async def watermarks(redis: Redis, settings: Settings) -> dict[int, Watermark]:
    keys = UserModelKeys(await Namespaces(redis, settings.redis_namespace, ttl_s=0).active())
    return await RedisWatermarks(redis, keys).load_watermarks()


async def applied_offsets(redis: Redis, settings: Settings) -> dict[int, int]:
    return {p: mark.offset for p, mark in (await watermarks(redis, settings)).items()}


async def caught_up(redis: Redis, settings: Settings, *, epoch: int = 0) -> bool:
    """Every non-empty partition of the events topic is applied to its end, in ``epoch``
    or later (after a broker lost its log, the old epoch's offsets may already reach
    the new log's end before the consumer has read any of it)."""

    def ignore(records: Any) -> Coroutine[Any, Any, None]:
        return asyncio.sleep(0)

    ends = (await read_topic(settings, EVENTS.name, ignore)).ends
    marks = await watermarks(redis, settings)
    return all(
        end == 0 or (p in marks and marks[p].epoch >= epoch and marks[p].offset >= end - 1)
        for p, end in ends.items()
    )


def assert_same_state(live: Digest, clean: Digest) -> None:
    """Equal digests; on a mismatch, show the facts that differ."""
    if live.hexdigest() != clean.hexdigest():
        live_lines, clean_lines = set(live.lines), set(clean.lines)
        differ = [f"live:  {line}" for line in sorted(live_lines - clean_lines)[:10]]
        differ += [f"clean: {line}" for line in sorted(clean_lines - live_lines)[:10]]
        pytest.fail("state differs from a clean run:\n" + "\n".join(differ))


async def live_state(redis: Redis, settings: Settings) -> Digest:
    keys = UserModelKeys(await Namespaces(redis, settings.redis_namespace, ttl_s=0).active())
    return await digest_namespace(redis, keys, FoldConfig.from_settings(settings).decay)


async def assert_same_as_a_clean_run(redis: Redis, settings: Settings) -> None:
    """The live namespace's digest equals a fresh fold of the topic's messages."""
    clean = UserModelKeys(f"clean-{uuid.uuid4().hex[:6]}")
    await rebuild_namespace(settings, redis, clean.namespace)
    config = FoldConfig.from_settings(settings)
    assert_same_state(
        await live_state(redis, settings), await digest_namespace(redis, clean, config.decay)
    )


async def folded_state(
    redis: Redis, settings: Settings, events: Sequence[BehaviourEvent]
) -> Digest:
    """A clean run over ``events`` without Kafka (each once, in order, one partition per
    user): for when the topic itself no longer holds them (a memory-only broker)."""
    keys = UserModelKeys(f"clean-{uuid.uuid4().hex[:6]}")
    envelopes = [
        Envelope(message=e, topic=EVENTS.name, partition=0, offset=n, key=None, timestamp_ms=0)
        for n, e in enumerate(events)
    ]
    await UserModelFolder(redis, FoldConfig.from_settings(settings)).fold(envelopes, keys)
    return await digest_namespace(redis, keys, FoldConfig.from_settings(settings).decay)


async def commit_offsets(
    settings: Settings, group_id: str, topic: str, offsets: Mapping[int, int]
) -> None:
    """Commit ``offsets`` for ``group_id`` from outside the group (as a commit of a
    member that has since gone would have)."""
    client = AIOKafkaConsumer(
        **aiokafka_options(settings), group_id=group_id, enable_auto_commit=False
    )
    await client.start()
    try:
        client.assign([TopicPartition(topic, p) for p in offsets])
        await client.commit(
            {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in offsets.items()}
        )
    finally:
        await client.stop()


@asynccontextmanager
async def raw_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A plain Kafka client, to write what Attune's own producers never would."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=False,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def read_dead_letters(settings: Settings, expected: int) -> list[DeadLetterRecord]:
    """Read the dead-letter topic until ``expected`` records are there (with a deadline)."""
    letters: list[DeadLetterRecord] = []

    def collect(records: Sequence[Any]) -> Coroutine[Any, Any, None]:
        letters.extend(DeadLetterRecord.model_validate_json(r.value) for r in records)
        return asyncio.sleep(0)

    async def enough() -> bool:
        letters.clear()
        await read_topic(settings, DEAD_LETTER.name, collect)
        return len(letters) >= expected

    await eventually(enough, f"{expected} dead letters")
    return letters


@contextmanager
def attune_process(
    service: str,
    settings: Settings,
    log: Path,
    *,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`attune run <service>` against the fault stack, killed at the end whatever happens.
    ``port``: where it serves HTTP (else a free one); ``extra_env``: more ATTUNE_* settings."""
    env = {
        **os.environ,
        "ATTUNE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ATTUNE_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "ATTUNE_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
        "ATTUNE_KAFKA_LOG_MAY_RESET": "true",
        "ATTUNE_REDIS_URL": settings.redis_url.get_secret_value(),
        "ATTUNE_CONSUMER_MAX_RECORDS": str(settings.consumer_max_records),
        "ATTUNE_VECTOR_INDEX_PATH": str(settings.vector_index_path),
        "ATTUNE_HTTP_PORT": str(port or free_port()),
        **(extra_env or {}),
    }
    attune = Path(sys.executable).with_name("attune")
    with log.open("ab") as out:
        process = subprocess.Popen([str(attune), "run", service], env=env, stdout=out, stderr=out)
        try:
            yield process
        except BaseException:
            tail = log.read_text(errors="replace").splitlines()[-80:]
            print(f"--- the last lines of {log.name} ---", *tail, sep="\n")
            raise
        finally:
            process.kill()
            process.wait()


@dataclass
class Applies:
    failed: int = 0


@asynccontextmanager
async def usermodel_consumer(
    settings: Settings, redis: Redis, *, fail_first_apply: Sequence[BaseException] = ()
) -> AsyncIterator[Applies]:
    """The usermodel consumer in this process, on a real broker and Redis, as `attune
    run usermodel` builds it; its first applies raise what ``fail_first_apply`` yields
    (after the batch is planned), then it folds as usual."""
    applies = Applies()
    failures = iter(fail_first_apply)
    probe = LogProbe(aiokafka_options(settings), log_may_reset=True)
    consumer = events_consumer(settings, redis, probe=probe)
    fold, prepare = consumer.apply, consumer.prepare
    assert prepare is not None

    def fail() -> None:
        error = next(failures, None)
        if error is not None:
            applies.failed += 1
            raise error

    async def apply_or_fail(events: Any, store: Any) -> Any:
        fail()
        return await fold(events, store)

    async def prepare_or_fail(events: Any) -> Any:  # the pipeline's way to apply
        ready = await prepare(events)

        async def applied(store: Any) -> Any:
            fail()
            return await ready(store)

        return applied

    consumer.apply, consumer.prepare = apply_or_fail, prepare_or_fail
    broker = make_broker(settings, logger=None)
    broker.include_router(consumer.router(description="fault test"))
    await broker.start()
    try:
        yield applies
    finally:
        await broker.stop()
        await probe.close()
