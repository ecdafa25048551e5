"""Scale-out on the embedded broker: two instances of a consumer in one group split the
partitions and together process a stream; when one dies the other takes its
partitions over; nothing is lost and nothing counts twice."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient
from redis.asyncio import Redis

from schemas.content import ContentUpsert
from schemas.topics import CONTENT
from services.app import datasets
from services.common.kafka import make_broker
from services.common.offsets import Watermark
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


class WordsEmbedder:
    """A deterministic stand-in for the model (the point here is the group, not vectors)."""

    async def embed_documents(self, texts: list[str]) -> object:
        import numpy as np

        rows = [[float(len(t) % 7 + 1), float(sum(map(ord, t)) % 11 + 1), 1.0, 0.5] for t in texts]
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def content(count: int) -> list[ContentUpsert]:
    return [
        ContentUpsert.model_validate(
            {"tenant": "scale", "item_id": f"i{n}", "title": f"Item number {n}",
             "updated_at": "2024-01-01T00:00:00Z", "version": n % 3 + 1}
        )
        for n in range(count)
    ]  # fmt: skip


async def test_two_embedder_consumers_split_the_content_and_one_takes_over(
    settings: Settings, tmp_path: Path
) -> None:
    """The embedded vector index (Qdrant Edge) belongs to one process, so both consumers
    run in this process, sharing it, each with its own connection to the group."""
    index = EdgeVectorIndex(tmp_path / "vectors", 4)
    await index.ensure_ready()
    embedder = WordsEmbedder()
    brokers = [make_broker(settings) for _ in range(2)]
    for broker in brokers:
        broker.include_router(content_router(settings, embedder, index))  # type: ignore[arg-type]
    try:
        await asyncio.gather(*(broker.start() for broker in brokers))
        items = content(3_000)
        await datasets.produce(settings, items[:1_500])
        await eventually(lambda: _has(index, 200), "the pair embeds")
        await brokers[0].stop()  # one leaves; the group gives its partitions to the other
        await datasets.produce(settings, items[1_500:])
        await eventually(lambda: _has(index, 3_000), "the survivor embeds the rest")
    finally:
        await asyncio.gather(*(broker.stop() for broker in brokers))

    clean = EdgeVectorIndex(tmp_path / "clean", 4)
    await clean.ensure_ready()
    await rebuild_collection(settings, embedder, clean)  # type: ignore[arg-type]
    try:
        assert (await digest_collection(index, "words")).hexdigest() == (
            await digest_collection(clean, "words")
        ).hexdigest()
    finally:
        await index.close()
        await clean.close()


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
