"""The user model on a real three-node Redis Cluster: every fold script touches one slot
(Redis refuses a script whose keys cross slots), and the state equals a single Redis's."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis, RedisCluster

from services.app.embedded import EmbeddedStack, ManagedProcess, free_port, redis_server_binary
from services.common.records import Envelope
from services.common.settings import Settings
from services.common.userstore.digest import digest_namespace
from services.common.userstore.keys import UserModelKeys
from services.common.userstore.read import UserModelReader
from services.usermodel.fold import FoldConfig, UserModelFolder
from tests.faults.conftest import synthetic_events

pytestmark = pytest.mark.integration

CONFIG = FoldConfig.from_settings(Settings())


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[RedisCluster]:
    redis_cli = shutil.which("redis-cli")
    assert redis_cli is not None, "redis-cli comes with Debian's redis-server (redis-tools)"
    ports = _cluster_ports(3)
    nodes = []
    try:
        for port in ports:
            folder = tmp_path / str(port)
            folder.mkdir()
            argv = [
                str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf"),
                "--dir", str(folder), "--save", "", "--appendonly", "no",
            ]  # fmt: skip
            nodes.append(ManagedProcess.start(f"redis {port}", argv, folder / "redis.log"))
        await _wait_for_ports(ports)
        await asyncio.to_thread(
            subprocess.run,
            [redis_cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        client = RedisCluster(host="127.0.0.1", port=ports[0])
        await _wait_until_ok(client)
        yield client
        await client.aclose()
    finally:
        for node in nodes:
            node.stop()


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster-bus port (port + 10000) is free and valid too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10_000 <= 65_535 and port not in ports and _is_free(port + 10_000):
            ports.append(port)
    return ports


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _wait_for_ports(ports: list[int]) -> None:
    deadline = time.monotonic() + 20
    for port in ports:
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"redis on {port} did not start"
                await asyncio.sleep(0.05)


async def _wait_until_ok(client: RedisCluster) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await client.initialize()
            if (await client.cluster_info()).get("cluster_state") == "ok":
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, "the cluster did not form"
        await asyncio.sleep(0.2)


def envelopes(count: int) -> list[Envelope[Any]]:
    """As Kafka delivers them: a user's events all in one partition, keyed by user."""
    return [
        Envelope(message=e, topic="attune.events", partition=zlib.crc32(e.user_key.encode()) % 3,
                 offset=n, key=None, timestamp_ms=0)
        for n, e in enumerate(synthetic_events(count, users=80, items=120))
    ]  # fmt: skip


async def test_the_fold_runs_on_a_cluster_and_matches_a_single_redis(
    cluster: RedisCluster, stack: EmbeddedStack
) -> None:
    batches = envelopes(3_000)
    on_cluster = UserModelKeys("cluster-test")
    folder = UserModelFolder(cast(Redis, cluster), CONFIG)
    for start in range(0, len(batches), 500):
        await folder.fold(batches[start : start + 500], on_cluster)
    await folder.fold(batches[:500], on_cluster)  # a redelivery changes nothing there too

    single = Redis.from_url(stack.redis_url)
    try:
        reference = UserModelKeys(f"single-{time.monotonic_ns()}")
        single_folder = UserModelFolder(single, CONFIG)
        for start in range(0, len(batches), 500):
            await single_folder.fold(batches[start : start + 500], reference)
        expected = await digest_namespace(single, reference, CONFIG.decay)
    finally:
        await single.aclose()

    got = await digest_namespace(cast(Redis, cluster), on_cluster, CONFIG.decay)
    assert got.counts == expected.counts
    assert got.hexdigest() == expected.hexdigest()

    reader = UserModelReader(cast(Redis, cluster), on_cluster, CONFIG.decay)
    user = batches[0].message.user_key
    assert (await reader.user("faults", user)).events > 0
    assert len(await reader.cooccurring("faults", ["i1", "i2"], 5)) == 2
    assert await reader.trending("faults", 3)
