"""Scale-out on the embedded broker: two instances of a consumer in one group split the
partitions and together process a stream; when one dies the other takes its
partitions over; nothing is lost and nothing counts twice.

The embedder runs the real model. A Qdrant Edge folder belongs to one process and no
Qdrant server runs here, so embedder processes cannot share one index: the killed-
process test gives each its own, and replicas sharing one collection are tested as
consumers in this process on one index, and as watermark writers on one index."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter as CountOf
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from qdrant_client import AsyncQdrantClient
from redis.asyncio import Redis

from schemas.content import ContentUpsert
from schemas.topics import CONTENT
from services.app import datasets
from services.app.embedded import free_port
from services.common.digest import Digest
from services.common.embedding import Embedder, Vectors
from services.common.kafka import make_broker
from services.common.offsets import Watermark
from services.common.replay import read_topic
from services.common.settings import Settings
from services.common.vectorindex import VectorIndex
from services.common.vectorindex.digest import digest_collection
from services.common.vectorindex.edge import EdgeVectorIndex
from services.common.vectorindex.server import QdrantServerIndex
from services.common.vectorindex.watermarks import IndexWatermarks
from services.embedder import content_router
from services.embedder.replay import rebuild_collection
from tests.faults.conftest import (
    applied_offsets,
    assert_same_as_a_clean_run,
    assert_same_state,
    attune_process,
    caught_up,
    eventually,
    synthetic_events,
)

pytestmark = pytest.mark.integration


def log_says(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


async def test_two_usermodel_processes_split_the_work_and_one_takes_over(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    events = synthetic_events(40_000, seed=21)
    with (
        attune_process("usermodel", settings, tmp_path / "a.log") as first,
        attune_process("usermodel", settings, tmp_path / "b.log") as second,
    ):

        async def both_assigned() -> bool:
            return all(
                log_says(tmp_path / name, "assigned to partitions: (TopicPartition")
                for name in ("a.log", "b.log")
            )

        await eventually(both_assigned, "both instances get partitions")
        traffic = asyncio.create_task(datasets.produce(settings, events))

        async def progressed() -> bool:
            return sum(o + 1 for o in (await applied_offsets(redis, settings)).values()) > 5_000

        await eventually(progressed, "the pair folds")
        first.send_signal(signal.SIGKILL)  # no goodbye to the group: the session must expire
        first.wait()
        await traffic
        await eventually(lambda: caught_up(redis, settings), "the survivor folds everything")
        assert second.poll() is None
    await assert_same_as_a_clean_run(redis, settings)


def content(count: int, *, updated_every: int = 10) -> list[ContentUpsert]:
    """``count`` items, then a second version of every ``updated_every``-th one."""
    first = [_item(n, 1) for n in range(count)]
    return first + [_item(n, 2) for n in range(0, count, updated_every)]


def _item(n: int, version: int) -> ContentUpsert:
    return ContentUpsert.model_validate(
        {"tenant": "scale", "item_id": f"i{n}", "title": f"Item number {n}, take {version}",
         "description": f"A short text about topic {n % 37} in version {version}.",
         "updated_at": "2024-01-01T00:00:00Z", "version": version}
    )  # fmt: skip


@pytest.fixture(scope="module")
def model() -> Iterator[Embedder]:
    loaded = Embedder.from_settings(Settings())
    yield loaded
    loaded.close()


async def clean_run(settings: Settings, model: Embedder, folder: Path) -> Digest:
    """The digest of one instance embedding the whole content topic into a fresh index."""
    clean = EdgeVectorIndex(folder, model.dimension)
    await clean.ensure_ready()
    try:
        await rebuild_collection(settings, model, clean)
        return await digest_collection(clean, model.model_name)
    finally:
        await clean.close()


async def content_ends(settings: Settings) -> dict[int, int]:
    def ignore(records: Any) -> Coroutine[Any, Any, None]:
        return asyncio.sleep(0)

    return (await read_topic(settings, CONTENT.name, ignore)).ends


async def content_lags(port: int) -> dict[int, float]:
    """The content consumer's lag per partition, from a process's /metrics (none while
    its HTTP server is not up yet: it starts after the consumer has joined its group)."""
    async with httpx.AsyncClient() as client:
        try:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.TransportError:
            return {}
    lags: dict[int, float] = {}
    for line in text.splitlines():
        if line.startswith("attune_consumer_lag{") and f'topic="{CONTENT.name}"' in line:
            partition = int(line.split('partition="', 1)[1].split('"', 1)[0])
            lags[partition] = float(line.rsplit(" ", 1)[1])
    return lags


async def test_an_embedder_process_killed_mid_stream_leaves_the_survivor_a_whole_collection(
    settings: Settings, model: Embedder, tmp_path: Path
) -> None:
    """Two `attune run embedder` processes with the real model share the content group;
    one is SIGKILLed while it still has work. Qdrant Edge locks its folder (one process
    per index, and no Qdrant server can run here), so each process has its own: the
    survivor takes the dead one's partitions and, finding its own index behind the
    group's committed offsets, embeds them from where its index ends (the start). Its
    collection must then equal one instance's over the same content."""
    items = content(800)
    ports = free_port(), free_port()
    own = [settings.model_copy(update={"vector_index_path": tmp_path / n}) for n in "ab"]
    with (
        attune_process("embedder", own[0], tmp_path / "a.log", port=ports[0]) as first,
        attune_process("embedder", own[1], tmp_path / "b.log", port=ports[1]) as second,
    ):

        async def both_assigned() -> bool:
            return all(
                log_says(tmp_path / name, "assigned to partitions: (TopicPartition")
                for name in ("a.log", "b.log")
            )

        await eventually(both_assigned, "both instances get partitions")
        await datasets.produce(settings, items)
        await eventually(lambda: _has_lag(ports[0]), "the first instance embeds a batch")
        first.send_signal(signal.SIGKILL)  # no goodbye to the group: the session must expire
        first.wait()
        ends = await content_ends(settings)

        async def survivor_done() -> bool:
            lags = await content_lags(ports[1])
            return all(lags.get(p) == 0 for p, end in ends.items() if end > 0)

        await eventually(survivor_done, "the survivor embeds every partition to its end")
        assert second.poll() is None
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0

    survivor = EdgeVectorIndex(own[1].vector_index_path, model.dimension)
    await survivor.ensure_ready()
    try:
        marks = await IndexWatermarks(survivor, CONTENT.name).load_watermarks()
        assert {p: m.offset for p, m in marks.items()} == {
            p: end - 1 for p, end in ends.items() if end > 0
        }
        assert await survivor.count("scale") == 800
        live = await digest_collection(survivor, model.model_name)
    finally:
        await survivor.close()
    assert_same_state(live, await clean_run(settings, model, tmp_path / "clean"))


async def _has_lag(port: int) -> bool:
    """The instance has stored a batch and has more to do: it is mid-stream."""
    return any(lag > 0 for lag in (await content_lags(port)).values())


class CountingEmbedder:
    """The real model, counting each text it is asked to embed."""

    def __init__(self, model: Embedder) -> None:
        self.model = model
        self.texts: CountOf[str] = CountOf()

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.texts.update(texts)
        return await self.model.embed_documents(texts)


def revocations(caplog: pytest.LogCaptureFixture) -> int:
    """How often a consumer gave partitions up: each time, the batch it had in flight
    may be embedded again by the consumer the partitions went to."""
    return sum(
        1
        for record in caplog.records
        if record.name == "aiokafka.consumer.group_coordinator"
        and record.msg.startswith("Revoking previously assigned partitions")
        and isinstance(record.args, tuple)
        and record.args[0]
    )


async def test_two_embedders_on_one_collection_rebalanced_mid_stream_embed_each_batch_once(
    settings: Settings, model: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two embedder consumers in one group write one collection, as replicas on one
    Qdrant server do; the second joins mid-stream, so partitions move. Two processes
    cannot share a Qdrant Edge folder: the consumers run in this process, each with its
    own connection to the group, on one index. The collection ends as one instance's,
    and a text is embedded twice only for the batch in flight when the partitions moved."""
    caplog.set_level(logging.INFO, "aiokafka.consumer.group_coordinator")
    index = EdgeVectorIndex(tmp_path / "shared", model.dimension)
    await index.ensure_ready()
    counting = CountingEmbedder(model)
    items = content(1_000)
    brokers = [make_broker(settings, logger=None) for _ in range(2)]
    for broker in brokers:
        broker.include_router(content_router(settings, counting, index))
    try:
        await brokers[0].start()
        await datasets.produce(settings, items[:600])
        await eventually(lambda: _has(index, 100), "the first consumer embeds")
        await brokers[1].start()  # joins: the group rebalances while the stream goes on
        await datasets.produce(settings, items[600:])
        await eventually(lambda: _has(index, 1_000), "the pair embeds everything")
        ends = await content_ends(settings)

        async def caught_up() -> bool:
            marks = await IndexWatermarks(index, CONTENT.name).load_watermarks()
            return all(p in marks and marks[p].offset == end - 1 for p, end in ends.items() if end)

        await eventually(caught_up, "the watermarks reach every partition's end")
    finally:
        await asyncio.gather(*(broker.stop() for broker in brokers))
    try:
        live = await digest_collection(index, model.model_name)
    finally:
        await index.close()
    assert_same_state(live, await clean_run(settings, model, tmp_path / "clean"))
    again = {text: n for text, n in counting.texts.items() if n > 1}
    moves = revocations(caplog)
    assert moves >= 1, "the partitions never moved"
    assert sum(n - 1 for n in again.values()) <= moves * settings.consumer_max_records, again


async def _has(index: EdgeVectorIndex, count: int) -> bool:
    return await index.count("scale") >= count


@pytest.mark.parametrize("engine", ["edge", "qdrant-client"])
async def test_two_writers_saving_different_partitions_keep_each_others_watermarks(
    engine: str, tmp_path: Path
) -> None:
    """Two embedder replicas on one collection (as with a Qdrant server) save their
    partitions' watermarks at the same time: neither may undo the other's. Their saves
    run in two tasks on one index, so they interleave wherever the index lets them."""
    index: VectorIndex
    if engine == "edge":
        index = EdgeVectorIndex(tmp_path / "shared", 4)
    else:
        index = QdrantServerIndex(AsyncQdrantClient(location=":memory:"), "shared", 4)
    await index.ensure_ready()
    first, second = IndexWatermarks(index, CONTENT.name), IndexWatermarks(index, CONTENT.name)
    try:
        for offset in range(40):
            await asyncio.gather(
                first.save_watermarks({0: Watermark(0, offset), 2: Watermark(0, offset)}),
                second.save_watermarks({1: Watermark(0, offset), 3: Watermark(0, offset)}),
            )
            stored = await IndexWatermarks(index, CONTENT.name).load_watermarks()
            assert {p: m.offset for p, m in stored.items()} == dict.fromkeys(range(4), offset)
    finally:
        await index.close()
