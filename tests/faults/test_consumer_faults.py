"""Faults on the real stack, each followed by the same checks: nothing acknowledged is
lost, nothing counts twice (the digest equals a clean run's over the same messages),
and the consumer is still running."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.topics import CONTENT, EVENTS
from services.app import datasets
from services.app.embedded import EmbeddedStack
from services.common.settings import Settings
from services.usermodel.subscriber import consumer_group
from tests.faults.conftest import (
    applied_offsets,
    assert_same_as_a_clean_run,
    assert_same_state,
    attune_process,
    caught_up,
    commit_offsets,
    eventually,
    folded_state,
    live_state,
    raw_producer,
    read_dead_letters,
    synthetic_events,
    usermodel_consumer,
)

pytestmark = pytest.mark.integration


async def progressed(redis: Redis, settings: Settings, events: int) -> bool:
    return sum(offset + 1 for offset in (await applied_offsets(redis, settings)).values()) >= events


def log_says(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


async def test_sigkill_mid_batch_then_restart(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    await datasets.produce(settings, synthetic_events(30_000))
    with attune_process("usermodel", settings, tmp_path / "first.log") as first:
        await eventually(lambda: progressed(redis, settings, 500), "the consumer folds")
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not await caught_up(redis, settings), "killed after the end: the test proves nothing"

    with attune_process("usermodel", settings, tmp_path / "second.log") as second:
        await eventually(lambda: caught_up(redis, settings), "the restarted consumer catches up")
        assert second.poll() is None
    await assert_same_as_a_clean_run(redis, settings)


async def test_sigterm_mid_batch_exits_in_time_and_commits_nothing_unstored(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    await datasets.produce(settings, synthetic_events(30_000, seed=8))
    with attune_process("usermodel", settings, tmp_path / "first.log") as first:
        await eventually(lambda: progressed(redis, settings, 500), "the consumer folds")
        first.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert await asyncio.to_thread(first.wait, 10) == 0
        assert time.monotonic() - started < 10

    with attune_process("usermodel", settings, tmp_path / "second.log") as second:
        await eventually(lambda: caught_up(redis, settings), "the restarted consumer catches up")
        assert second.poll() is None
    await assert_same_as_a_clean_run(redis, settings)


async def test_sigterm_while_a_batch_waits_for_redis_abandons_it(
    fault_stack: EmbeddedStack, settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    await datasets.produce(settings, synthetic_events(20_000, seed=9))
    log = tmp_path / "first.log"
    with attune_process("usermodel", settings, log) as first:
        await eventually(lambda: progressed(redis, settings, 500), "the consumer folds")
        fault_stack.stop_component("redis")

        async def retrying() -> bool:
            return log_says(log, "dependency unavailable")

        await eventually(retrying, "the consumer retries the store")
        first.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert await asyncio.to_thread(first.wait, 10) == 0
        assert time.monotonic() - started < 10
    await fault_stack.start_redis()

    with attune_process("usermodel", settings, tmp_path / "second.log") as second:
        await eventually(lambda: caught_up(redis, settings), "the restarted consumer catches up")
        assert second.poll() is None
    await assert_same_as_a_clean_run(redis, settings)


async def test_redis_down_for_ten_seconds_while_events_flow(
    fault_stack: EmbeddedStack, settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    events = synthetic_events(24_000, seed=10)
    log = tmp_path / "consumer.log"

    async def steady_traffic() -> None:  # about 2,000 events/s for 12 s
        for start in range(0, len(events), 1_000):
            await datasets.produce(settings, events[start : start + 1_000])
            await asyncio.sleep(0.5)

    with attune_process("usermodel", settings, log) as consumer:
        traffic = asyncio.create_task(steady_traffic())
        await eventually(lambda: progressed(redis, settings, 1_000), "the consumer folds")
        fault_stack.stop_component("redis")
        await asyncio.sleep(10)  # the outage itself: Redis stays down this long
        assert consumer.poll() is None
        await fault_stack.start_redis()
        await traffic
        await eventually(lambda: caught_up(redis, settings), "the consumer catches up")
        assert consumer.poll() is None
        assert log_says(log, "dependency unavailable")
    await assert_same_as_a_clean_run(redis, settings)


async def test_broker_restart(
    fault_stack: EmbeddedStack, settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    """The embedded broker keeps its log in memory: a restart brings back empty topics
    whose offsets start at 0 again. The consumer sees the partitions reset and starts a
    new epoch, so new events count even though their offsets were used before."""
    before = synthetic_events(4_000, seed=11)
    after = [
        event.model_copy(update={"message_id": f"after-{n}"})
        for n, event in enumerate(synthetic_events(4_000, seed=12))
    ]
    with attune_process("usermodel", settings, tmp_path / "consumer.log") as consumer:
        await datasets.produce(settings, before)
        await eventually(lambda: caught_up(redis, settings), "the consumer folds the first part")
        fault_stack.stop_component("broker")
        # nothing is acknowledged while it is down
        with pytest.raises((datasets.ProduceError, KafkaConnectionError)):
            await datasets.produce(settings, after[:1], retries=1, backoff_s=0.1)
        await fault_stack.start_broker()
        await datasets.produce(settings, after)
        await eventually(lambda: caught_up(redis, settings, epoch=1), "the consumer folds the rest")
        assert consumer.poll() is None
    clean = await folded_state(redis, settings, [*before, *after])
    assert_same_state(await live_state(redis, settings), clean)


async def test_broker_restart_with_a_shorter_log(
    fault_stack: EmbeddedStack, settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    """The broker restarts with an empty log while the group's committed offsets point
    where the consumer was (a commit that reached the new broker; here the test makes
    it, between two runs of the consumer), and every partition's new log ends before
    that. Apache Kafka would answer fetches there OFFSET_OUT_OF_RANGE and the consumer
    would reset; the embedded broker answers nothing, and the consumer would wait past
    the end of the log for records that arrive below it."""
    before = synthetic_events(4_000, seed=14)
    after = [
        event.model_copy(update={"message_id": f"after-{n}"})
        for n, event in enumerate(synthetic_events(600, seed=15))
    ]
    with attune_process("usermodel", settings, tmp_path / "first.log"):
        await datasets.produce(settings, before)
        await eventually(lambda: caught_up(redis, settings), "the consumer folds the first part")
    positions = {p: offset + 1 for p, offset in (await applied_offsets(redis, settings)).items()}
    fault_stack.stop_component("broker")
    await fault_stack.start_broker()
    await commit_offsets(settings, consumer_group(settings), EVENTS.name, positions)
    await datasets.produce(settings, after)
    with attune_process("usermodel", settings, tmp_path / "second.log") as consumer:
        await eventually(lambda: caught_up(redis, settings, epoch=1), "the consumer folds the rest")
        assert consumer.poll() is None
    clean = await folded_state(redis, settings, [*before, *after])
    assert_same_state(await live_state(redis, settings), clean)


async def test_poison_messages_go_to_the_dead_letter_topic_and_consumers_go_on(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    valid = synthetic_events(200, seed=13)
    poison = {
        b"{not json": "invalid_json",
        json.dumps({"tenant": "faults", "event": "view", "messageId": "m"}).encode(): (
            "schema_violation"
        ),
        json.dumps({"schema_version": 9, "tenant": "faults"}).encode(): (
            "unsupported_schema_version"
        ),
        json.dumps({"pad": "x" * 2_000_000}).encode(): "too_large",
    }
    async with raw_producer(settings) as producer:
        for topic in (EVENTS.name, CONTENT.name):
            for value in poison:
                await producer.send_and_wait(topic, value, key=b"faults/poison")
    with (
        attune_process("usermodel", settings, tmp_path / "usermodel.log") as usermodel,
        attune_process("embedder", settings, tmp_path / "embedder.log") as embedder,
    ):
        await datasets.produce(settings, valid)
        await eventually(lambda: caught_up(redis, settings), "the events after the poison fold")
        letters = await read_dead_letters(settings, expected=2 * len(poison))
        assert usermodel.poll() is None
        assert embedder.poll() is None
    by_topic = {
        topic: sorted(letter.reason for letter in letters if letter.topic == topic)
        for topic in (EVENTS.name, CONTENT.name)
    }
    assert by_topic == {topic: sorted(poison.values()) for topic in by_topic}
    too_large = next(letter for letter in letters if letter.reason == "too_large")
    assert too_large.value_size > 2_000_000
    assert too_large.value.startswith(b'{"pad": "xxx')  # the start of the original bytes
    violation = next(letter for letter in letters if letter.reason == "schema_violation")
    assert "userId or anonymousId" in violation.error or "timestamp" in violation.error
    await assert_same_as_a_clean_run(redis, settings)


async def test_state_lost_then_an_outage_right_after_the_plan_loses_nothing(
    settings: Settings, redis: Redis
) -> None:
    """Redis comes back empty (its state is behind the group's committed offsets), and
    the first store call after the gapped batch is planned fails once: the batch is
    planned again, and the records in the gap must still be fetched, not skipped."""
    await datasets.produce(settings, synthetic_events(6_000, seed=14))
    async with usermodel_consumer(settings, redis):
        await eventually(lambda: caught_up(redis, settings), "the consumer folds")
    await redis.flushall()
    await datasets.produce(settings, synthetic_events(2_000, seed=15))

    failures = [RedisConnectionError("injected: Redis went away after the plan")]

    async with usermodel_consumer(settings, redis, fail_first_apply=failures) as applies:
        await eventually(lambda: caught_up(redis, settings), "the consumer folds everything")
        assert applies.failed == 1
    await assert_same_as_a_clean_run(redis, settings)


async def test_state_lost_after_the_whole_topic_was_folded_is_folded_again(
    settings: Settings, redis: Redis
) -> None:
    """Every partition folded and committed to its end, then Redis comes back empty: no
    new record will arrive to reveal the gap, so a restarted consumer must start where
    the state ends (nowhere), not where the group committed (the end)."""
    await datasets.produce(settings, synthetic_events(3_000, seed=16))
    async with usermodel_consumer(settings, redis):
        await eventually(lambda: caught_up(redis, settings), "the consumer folds")
    await redis.flushall()
    async with usermodel_consumer(settings, redis):
        await eventually(lambda: caught_up(redis, settings), "the consumer folds it all again")
    await assert_same_as_a_clean_run(redis, settings)
