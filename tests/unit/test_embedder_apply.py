"""The embedder's domain step, with a fake embedder and a real Qdrant Edge shard."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import TypeAdapter
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from schemas.content import ContentMessage, ContentTombstone, ContentUpsert
from services.common.embedding import Vectors
from services.common.records import Envelope
from services.common.vectorindex import ItemFilter, ItemWrite
from services.common.vectorindex.edge import EdgeVectorIndex
from services.common.vectorindex.outage import is_transient_index_error, tolerating_outages
from services.embedder.apply import (
    ContentEnvelope,
    apply_content,
    newest_per_item,
    short_description,
)

DIM = 8
ADAPTER: TypeAdapter[ContentUpsert | ContentTombstone] = TypeAdapter(ContentMessage)


class FakeEmbedder:
    """Deterministic unit vectors from a hash of the text; remembers every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @staticmethod
    def vector(text: str) -> np.ndarray:
        digest = hashlib.sha256(text.encode()).digest()
        raw = np.frombuffer(digest[:DIM], dtype=np.uint8).astype(np.float32) + 1.0
        return raw / np.linalg.norm(raw)

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        return np.asarray([self.vector(t) for t in texts], dtype=np.float32).reshape(-1, DIM)

    @property
    def texts(self) -> list[str]:
        return [text for call in self.calls for text in call]


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[EdgeVectorIndex]:
    engine = EdgeVectorIndex(tmp_path / "shard", DIM)
    await engine.ensure_ready()
    yield engine
    await engine.close()


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


_offsets = iter(range(1_000_000))


def envelope(data: dict[str, Any], offset: int | None = None) -> ContentEnvelope:
    return Envelope(
        message=ADAPTER.validate_python(data),
        topic="attune.content",
        partition=0,
        offset=next(_offsets) if offset is None else offset,
        key=f"{data['tenant']}/{data['item_id']}".encode(),
        timestamp_ms=0,
    )


def upsert(item_id: str, version: int, title: str = "", **fields: Any) -> ContentEnvelope:
    return envelope(
        {
            "tenant": fields.pop("tenant", "acme"),
            "item_id": item_id,
            "version": version,
            "updated_at": "2024-05-01T12:00:00Z",
            "title": title or f"{item_id} v{version}",
            **fields,
        }
    )


def tombstone(item_id: str, version: int | None, tenant: str = "acme") -> ContentEnvelope:
    return envelope(
        {
            "tenant": tenant,
            "item_id": item_id,
            **({} if version is None else {"version": version}),
            "updated_at": "2024-05-02T12:00:00Z",
            "op": "delete",
        }
    )


async def titles(index: EdgeVectorIndex, *item_ids: str, tenant: str = "acme") -> list[str]:
    return [item.payload["title"] for item in await index.retrieve(tenant, list(item_ids))]


async def test_upserts_are_embedded_and_stored_with_their_payload(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    long_description = "word " * 100
    batch = [
        upsert(
            "m1",
            7,
            title="Alien",
            description=long_description,
            body="A crew meets a creature.",
            tags=["sci-fi", "horror"],
            metadata={"year": 1979, "rating": 8.5, "cast": ["Weaver"]},
        ),
        upsert("m2", 1, title="Heat"),
    ]

    stats = await apply_content(batch, embedder, index)

    assert (stats.upserted, stats.deleted, stats.superseded, stats.embedded) == (2, 0, 0, 2)
    assert stats.embed_seconds >= 0
    assert embedder.calls == [[f"Alien\n{long_description}\nA crew meets a creature.", "Heat"]]
    [alien] = await index.retrieve("acme", ["m1"], with_vectors=True)
    assert alien.version == 7
    assert alien.payload["tags"] == ["sci-fi", "horror"]
    assert alien.payload["meta"] == {"year": 1979, "rating": 8.5, "cast": ["Weaver"]}
    assert alien.payload["title"] == "Alien"
    assert datetime.fromisoformat(alien.payload["updated_at"]) == datetime(
        2024, 5, 1, 12, tzinfo=UTC
    )
    assert len(alien.payload["description"]) <= 300
    assert alien.payload["description"].startswith("word word")
    assert alien.vector == pytest.approx(FakeEmbedder.vector(batch[0].message.text_to_embed()))  # type: ignore[union-attr]
    [heat] = await index.retrieve("acme", ["m2"])
    assert heat.payload["description"] is None
    hits = await index.search(FakeEmbedder.vector("Heat").tolist(), ItemFilter("acme"), 1)
    assert hits[0].item.item_id == "m2"


async def test_only_the_newest_version_per_item_is_embedded(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    batch = [upsert("a", 3), upsert("b", 1), upsert("a", 5), upsert("a", 4)]

    stats = await apply_content(batch, embedder, index)

    assert stats.superseded == 2
    assert stats.embedded == 2
    assert sorted(embedder.texts) == ["a v5", "b v1"]
    assert await titles(index, "a", "b") == ["a v5", "b v1"]


async def test_on_equal_versions_the_later_record_wins(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    batch = [upsert("a", 2, title="first"), upsert("a", 2, title="second")]

    await apply_content(batch, embedder, index)

    assert embedder.texts == ["second"]
    assert await titles(index, "a") == ["second"]


async def test_the_same_item_id_in_two_tenants_is_two_items(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    batch = [
        upsert("a", 1, title="acme's", tenant="acme"),
        upsert("a", 1, title="globex's", tenant="globex"),
    ]

    stats = await apply_content(batch, embedder, index)

    assert stats.superseded == 0
    assert await titles(index, "a", tenant="acme") == ["acme's"]
    assert await titles(index, "a", tenant="globex") == ["globex's"]


async def test_a_tombstone_deletes_and_is_not_embedded(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    await apply_content([upsert("a", 1), upsert("b", 1)], embedder, index)

    stats = await apply_content([tombstone("a", 2)], embedder, index)

    assert (stats.upserted, stats.deleted, stats.embedded) == (0, 1, 0)
    assert len(embedder.calls) == 1
    assert await titles(index, "a", "b") == ["b v1"]
    assert await index.count("acme") == 1


async def test_a_newer_tombstone_in_the_batch_beats_an_upsert(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    stats = await apply_content([upsert("a", 1), tombstone("a", 2)], embedder, index)

    assert (stats.upserted, stats.deleted, stats.superseded) == (0, 1, 1)
    assert embedder.calls == []
    assert await titles(index, "a") == []


async def test_across_batches_an_older_version_never_replaces_a_newer_one(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    await apply_content([upsert("a", 5)], embedder, index)
    await apply_content([upsert("a", 4)], embedder, index)  # late arrival
    assert await titles(index, "a") == ["a v5"]

    await apply_content([tombstone("a", 6)], embedder, index)
    await apply_content([upsert("a", 5)], embedder, index)  # redelivery of an older upsert
    assert await titles(index, "a") == []

    await apply_content([upsert("a", 7)], embedder, index)
    assert await titles(index, "a") == ["a v7"]


async def test_replaying_a_batch_changes_nothing(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    batch = [upsert("a", 1), upsert("b", 2), tombstone("a", 3)]
    await apply_content(batch, embedder, index)
    first = await index.retrieve("acme", ["a", "b"], with_vectors=True)

    await apply_content(batch, embedder, index)

    assert await index.retrieve("acme", ["a", "b"], with_vectors=True) == first
    assert await index.count() == 1


async def test_an_empty_batch_does_nothing(index: EdgeVectorIndex, embedder: FakeEmbedder) -> None:
    stats = await apply_content([], embedder, index)

    assert stats.upserted == stats.deleted == stats.embedded == 0
    assert embedder.calls == []


def test_newest_per_item_keeps_batch_order_of_the_winners() -> None:
    batch = [upsert("a", 1), upsert("b", 1), upsert("a", 2), upsert("c", 1)]

    winners, superseded = newest_per_item(batch)

    assert [(e.message.item_id, e.message.version) for e in winners] == [
        ("b", 1),
        ("a", 2),
        ("c", 1),
    ]
    assert superseded == 1


def test_version_defaults_to_updated_at_in_microseconds() -> None:
    base = {"tenant": "t", "item_id": "x"}
    older = envelope({**base, "title": "old", "updated_at": "2024-01-01T00:00:00Z"})
    newer = envelope({**base, "title": "new", "updated_at": "2024-01-02T00:00:00Z"})

    winners, _ = newest_per_item([newer, older])

    assert [e.message.title for e in winners] == ["new"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, None), ("", None), ("  short  ", "short"), ("x" * 300, "x" * 300)],
)
def test_short_description(text: str | None, expected: str | None) -> None:
    assert short_description(text) == expected


def test_a_long_description_is_cut_to_300_characters() -> None:
    cut = short_description("y" * 1_000)
    assert cut is not None
    assert len(cut) == 300
    assert cut.endswith("\u2026")


class FlakyIndex:
    """Fails ``failures`` times with ``error``, then records the writes."""

    dimension = DIM

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures = error, failures
        self.attempts = 0
        self.applied: list[ItemWrite] = []

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        self.applied.extend(writes)


async def test_a_transient_index_error_is_retried_until_the_write_lands(
    embedder: FakeEmbedder,
) -> None:
    flaky = FlakyIndex(ResponseHandlingException(httpx.ConnectError("refused")), failures=2)

    stats = await apply_content([upsert("a", 1)], embedder, tolerating_outages(flaky))  # type: ignore[arg-type]

    assert flaky.attempts == 3
    assert [write.item_id for write in flaky.applied] == ["a"]
    assert stats.upserted == 1
    assert len(embedder.calls) == 1  # embedded once, not once per attempt


async def test_a_permanent_index_error_propagates_at_once() -> None:
    flaky = FlakyIndex(ValueError("bad point"), failures=1)

    with pytest.raises(ValueError, match="bad point"):
        await tolerating_outages(flaky).apply([])  # type: ignore[arg-type]
    assert flaky.attempts == 1


def _unexpected(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "", b"", httpx.Headers())


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (ResponseHandlingException(httpx.ConnectError("refused")), True),
        (ResponseHandlingException(ValueError("unparseable response")), False),
        (_unexpected(503), True),
        (_unexpected(429), True),
        (_unexpected(400), False),
        (_unexpected(404), False),
        (ValueError("bug"), False),
        (RuntimeError("edge shard failure"), False),
    ],
)
def test_which_index_errors_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient_index_error(error) is transient
