"""Content versions in the embedder: the range they must stay in, and tombstones without
one (they delete whatever version is stored), with a fake embedder and a real Qdrant
Edge shard."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from qdrant_client.http.exceptions import ResponseHandlingException

from services.common.vectorindex import StoredItem
from services.common.vectorindex.edge import EdgeVectorIndex
from services.common.vectorindex.outage import tolerating_outages
from services.embedder.apply import apply_content
from tests.unit.test_embedder_apply import (
    ADAPTER,
    DIM,
    FakeEmbedder,
    FlakyIndex,
    embedder,
    index,
    titles,
    tombstone,
    upsert,
)

__all__ = ["embedder", "index"]  # fixtures


@pytest.mark.parametrize("version", [2**53, 2**53 + 1])
def test_versions_from_2_to_the_53_are_refused(version: int) -> None:
    """The index compares versions as 64-bit floats: 2^53 + 1 would pass for 2^53."""
    base = {"tenant": "t", "item_id": "x", "updated_at": "2024-01-01T00:00:00Z"}
    for message in ({**base, "title": "x"}, {**base, "op": "delete"}):
        ADAPTER.validate_python({**message, "version": 2**53 - 1})
        with pytest.raises(ValidationError) as refused:
            ADAPTER.validate_python({**message, "version": version})
        [error] = refused.value.errors()
        assert (error["type"], error["loc"][-1]) == ("less_than_equal", "version")


async def stored_state(index: EdgeVectorIndex) -> set[tuple[str, str, int]]:
    return {(s.item_id, s.payload["state"], s.version) async for s in index.scroll()}


async def test_a_counter_versioned_upsert_after_a_versionless_delete_brings_the_item_back(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    """A producer counting its versions deletes without one: the delete must not take a
    version from the clock (microseconds since 1970), which would outrank every count."""
    await apply_content([upsert("a", 5)], embedder, index)
    await apply_content([tombstone("a", None)], embedder, index)
    assert await titles(index, "a") == []
    assert await stored_state(index) == {("a", "deleted", 5)}

    await apply_content([upsert("a", 4)], embedder, index)  # older than what was deleted
    assert await titles(index, "a") == []

    await apply_content([upsert("a", 6)], embedder, index)
    assert await titles(index, "a") == ["a v6"]


async def test_within_a_batch_a_versionless_delete_erases_what_came_before_it(
    index: EdgeVectorIndex, embedder: FakeEmbedder
) -> None:
    await apply_content([upsert("a", 2), upsert("b", 2)], embedder, index)

    stats = await apply_content(
        [upsert("a", 9), tombstone("a", None), upsert("a", 3),
         upsert("b", 3), tombstone("b", None), upsert("b", 4),
         tombstone("c", None), upsert("c", 1)],
        embedder, index,
    )  # fmt: skip

    # a: 9 was seen before the delete, so 3 is older; b: 4 is newer than the 3 deleted;
    # c: nothing was there to delete.
    assert await stored_state(index) == {("a", "deleted", 9), ("b", "live", 4), ("c", "live", 1)}
    assert (stats.upserted, stats.deleted) == (2, 1)
    assert embedder.texts[-2:] == ["b v4", "c v1"]


@pytest.mark.parametrize("seed", range(12))
async def test_a_batch_ends_as_its_messages_applied_one_by_one(
    tmp_path: Path, embedder: FakeEmbedder, seed: int
) -> None:
    """Live batches and a replay's cut the topic differently: both must give one state."""
    import random

    rng = random.Random(seed)
    messages = [
        upsert("a", rng.randrange(6)) if rng.random() < 0.6
        else tombstone("a", rng.choice([None, rng.randrange(6)]))
        for _ in range(rng.randrange(1, 8))
    ]  # fmt: skip
    states = []
    for name, batches in (("one", [messages]), ("each", [[m] for m in messages])):
        engine = EdgeVectorIndex(tmp_path / name, DIM)
        await engine.ensure_ready()
        try:
            await apply_content([upsert("a", 2)], embedder, engine)
            for batch in batches:
                await apply_content(batch, embedder, engine)
            states.append(await stored_state(engine))
        finally:
            await engine.close()
    assert states[0] == states[1], [(e.message.op, e.message.version) for e in messages]


class FlakyReads(FlakyIndex):
    """Its reads fail ``failures`` times with ``error``; it holds item ``a`` at 3."""

    async def retrieve(self, tenant: str, item_ids: Sequence[str], **_: Any) -> list[Any]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        return [StoredItem(tenant, "a", 3, {})] if "a" in item_ids else []


async def test_the_version_a_versionless_delete_reads_is_retried_through_an_outage(
    embedder: FakeEmbedder,
) -> None:
    flaky = FlakyReads(ResponseHandlingException(httpx.ConnectError("refused")), failures=2)

    await apply_content([tombstone("a", None)], embedder, tolerating_outages(flaky))  # type: ignore[arg-type]

    assert [(w.item_id, w.version) for w in flaky.applied] == [("a", 3)]
