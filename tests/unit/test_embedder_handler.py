"""The content subscriber in FastStream's in-memory TestKafkaBroker: a fake embedder,
a real Qdrant Edge shard, dead letters captured by a test subscriber."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from prometheus_client import REGISTRY

from schemas.deadletter import DeadLetterRecord
from schemas.topics import CONTENT, DEAD_LETTER, content_key
from services.common.consumer import BatchConsumer
from services.common.kafka import make_broker
from services.common.settings import Settings
from services.common.vectorindex.edge import EdgeVectorIndex
from services.embedder import consumer_group, content_router
from tests.unit.test_embedder_apply import DIM, FakeEmbedder


class Harness:
    def __init__(self, broker: KafkaBroker, index: EdgeVectorIndex, embedder: FakeEmbedder):
        self.broker, self.index, self.embedder = broker, index, embedder
        self.dead_letters: list[DeadLetterRecord] = []

    async def send(self, *bodies: Any) -> None:
        """One batch on the content topic (dicts as JSON, bytes as they are)."""
        await self.broker.publish_batch(*bodies, topic=CONTENT.name)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = Settings(kafka_group_prefix="unit")
    index = EdgeVectorIndex(tmp_path / "shard", DIM)
    await index.ensure_ready()
    embedder = FakeEmbedder()
    broker = make_broker(settings)
    broker.include_router(content_router(settings, embedder, index))
    running = Harness(broker, index, embedder)

    @broker.subscriber(DEAD_LETTER.name)
    async def capture(body: dict[str, Any]) -> None:
        running.dead_letters.append(DeadLetterRecord.model_validate(body))

    async with TestKafkaBroker(broker):
        yield running
    await index.close()


def movie(item_id: str, version: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "item_id": item_id,
        "version": version,
        "updated_at": "2024-05-01T12:00:00Z",
        "title": f"Movie {item_id}",
        **fields,
    }


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_valid_upsert_reaches_the_index(harness: Harness) -> None:
    await harness.send(movie("m1", tags=["drama"], metadata={"year": 1995}))

    [stored] = await harness.index.retrieve("acme", ["m1"])
    assert stored.payload["title"] == "Movie m1"
    assert stored.payload["tags"] == ["drama"]
    assert stored.payload["meta"] == {"year": 1995}
    assert harness.embedder.texts == ["Movie m1"]
    assert harness.dead_letters == []


async def test_bad_messages_go_to_the_dead_letter_topic_and_the_batch_goes_on(
    harness: Harness,
) -> None:
    group = consumer_group(Settings(kafka_group_prefix="unit"))
    consumed = sample("attune_consumer_messages_total", topic=CONTENT.name, consumer=group)
    embedded = sample("attune_embedder_docs_embedded_total")
    invalid_json = b'{"tenant": "acme", "item_id":'
    no_title = movie("m3")
    del no_title["title"]

    await harness.send(movie("m1"), invalid_json, no_title, movie("m2"))

    assert [item.item_id for item in await harness.index.retrieve("acme", ["m1", "m2", "m3"])] == [
        "m1",
        "m2",
    ]
    by_reason = {letter.reason: letter for letter in harness.dead_letters}
    assert set(by_reason) == {"invalid_json", "schema_violation"}
    assert by_reason["invalid_json"].value == invalid_json
    assert json.loads(by_reason["schema_violation"].value) == no_title
    assert "title" in by_reason["schema_violation"].error
    assert all(letter.topic == CONTENT.name for letter in harness.dead_letters)
    assert all(
        letter.consumer == consumer_group(Settings(kafka_group_prefix="unit"))
        for letter in harness.dead_letters
    )
    assert (
        sample("attune_consumer_messages_total", topic=CONTENT.name, consumer=group) == consumed + 4
    )
    assert sample("attune_embedder_docs_embedded_total") == embedded + 2
    assert (
        sample(
            "attune_consumer_dead_lettered_total",
            topic=CONTENT.name,
            consumer=group,
            reason="schema_violation",
        )
        >= 1
    )


async def test_an_unsupported_schema_version_is_dead_lettered(harness: Harness) -> None:
    await harness.send(movie("m1", schema_version=2))

    [letter] = harness.dead_letters
    assert letter.reason == "unsupported_schema_version"
    assert await harness.index.count() == 0


async def test_a_tombstone_deletes_the_item(harness: Harness) -> None:
    await harness.send(movie("m1"), movie("m2"))

    await harness.send(
        {
            "tenant": "acme",
            "item_id": "m1",
            "op": "delete",
            "version": 2,
            "updated_at": "2024-05-02T00:00:00Z",
        }
    )

    assert [item.item_id for item in await harness.index.retrieve("acme", ["m1", "m2"])] == ["m2"]
    assert harness.dead_letters == []


async def test_the_newest_version_wins_within_and_across_batches(harness: Harness) -> None:
    await harness.send(movie("m1", 2, title="two"), movie("m1", 3, title="three"))
    await harness.send(movie("m1", 1, title="one"))

    [stored] = await harness.index.retrieve("acme", ["m1"])
    assert stored.payload["title"] == "three"
    assert harness.embedder.texts == ["three", "one"]


async def test_versions_from_2_to_the_53_are_dead_lettered(harness: Harness) -> None:
    """Compared as floats, 2^53 + 3 rounds to 2^53 + 4: the later, older message used to
    replace the newer one. Neither is taken now."""
    await harness.send(movie("m1", 2**53 + 4, title="newer"))
    await harness.send(movie("m1", 2**53 + 3, title="older"))
    assert await harness.index.retrieve("acme", ["m1"]) == []

    await harness.send(movie("m1", 2**53 - 1, title="in range"))
    [stored] = await harness.index.retrieve("acme", ["m1"])
    assert stored.payload["title"] == "in range"
    assert [letter.reason for letter in harness.dead_letters] == ["schema_violation"] * 2
    assert all("version" in letter.error for letter in harness.dead_letters)


async def test_a_single_published_message_is_a_batch_of_one(harness: Harness) -> None:
    await harness.broker.publish(movie("solo"), CONTENT.name, key=content_key("acme", "solo"))

    assert [item.item_id for item in await harness.index.retrieve("acme", ["solo"])] == ["solo"]


class BrokenIndex:
    dimension = DIM

    async def read_meta(self, key: str) -> None:
        return None

    async def read_metas(self, prefix: str) -> dict[str, Any]:
        return {}

    async def apply(self, writes: object) -> None:
        raise RuntimeError("index broken")


async def test_an_index_that_fails_every_write_fails_the_batch_so_it_is_not_acked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every record failing alone is the index's fault, not the records': nothing is
    dead-lettered, the batch is redelivered."""
    monkeypatch.setattr(BatchConsumer, "PAUSES_BEFORE_ISOLATING", ())
    settings = Settings(kafka_group_prefix="unit")
    broker = make_broker(settings)
    broker.include_router(content_router(settings, FakeEmbedder(), BrokenIndex()))  # type: ignore[arg-type]
    letters: list[Any] = []
    broker.subscriber(DEAD_LETTER.name)(letters.append)

    async with TestKafkaBroker(broker):
        with pytest.raises(RuntimeError, match="index broken"):
            await broker.publish_batch(movie("m1"), movie("m2"), topic=CONTENT.name)
    assert letters == []
