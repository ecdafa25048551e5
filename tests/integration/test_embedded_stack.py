"""The embedded stack on real processes: broker, Redis, and clean shutdown."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient

from schemas import ALL_TOPICS, EVENTS, BehaviourEvent, events_key
from services.app.embedded import EmbeddedStack
from services.common.kafka import make_broker
from services.common.settings import Settings

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its process-table entry is left.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


async def test_stack_starts_in_under_20_seconds_and_stops_its_processes(tmp_path: Path) -> None:
    started = time.monotonic()
    stack = EmbeddedStack(tmp_path)
    await stack.start()
    elapsed = time.monotonic() - started
    pids = stack.pids
    try:
        assert elapsed < 20, f"stack took {elapsed:.1f} s"
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
    finally:
        stack.stop()
    assert not any(_alive(pid) for pid in pids)


async def test_topics_exist_with_their_declared_partitions(stack: EmbeddedStack) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([spec.name for spec in ALL_TOPICS])
    finally:
        await admin.close()
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in described}
    assert partitions == {spec.name: spec.partitions for spec in ALL_TOPICS}


async def test_redis_answers(stack_settings: Settings) -> None:
    client = aioredis.from_url(stack_settings.redis_url.get_secret_value())
    try:
        assert await client.ping() is True
        await client.set("attune:test", "ok")
        assert await client.get("attune:test") == b"ok"
    finally:
        await client.aclose()


async def test_a_produced_message_comes_back_through_a_consumer_group(
    stack_settings: Settings,
) -> None:
    broker = make_broker(stack_settings)
    received: asyncio.Future[BehaviourEvent] = asyncio.get_running_loop().create_future()
    group = f"roundtrip-{uuid.uuid4().hex[:8]}"
    message_id = uuid.uuid4().hex

    @broker.subscriber(
        EVENTS.name,
        group_id=group,
        auto_offset_reset="earliest",
        session_timeout_ms=stack_settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=1_000,
    )
    async def handle(event: BehaviourEvent) -> None:
        if event.message_id == message_id and not received.done():
            received.set_result(event)

    event = BehaviourEvent.model_validate(
        {
            "tenant": "acme",
            "event": "view",
            "userId": "u-1",
            "messageId": message_id,
            "timestamp": "2024-05-01T12:00:00Z",
            "properties": {"item_id": "movie-1"},
        }
    )
    async with broker:
        await broker.start()
        await broker.publish(
            event.model_dump(mode="json"), EVENTS.name, key=events_key("acme", "u-1")
        )
        got = await asyncio.wait_for(received, timeout=60)

    assert got == event


STACK_SCRIPT = """
import asyncio, sys
from pathlib import Path
from services.app.embedded import EmbeddedStack

async def main():
    async with EmbeddedStack(Path(sys.argv[1])) as stack:
        print(" ".join(map(str, stack.pids)), flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_a_killed_owner_leaves_no_stack_process_behind(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", STACK_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        pids = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
        owner.kill()  # SIGKILL: no cleanup code runs in the owner
        owner.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in pids)
    finally:
        owner.kill()
