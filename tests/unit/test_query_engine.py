"""The recommendation engine over a fake user model and a fake vector index: the
blend, per-request weight overrides, explicit exclusions, the cold start, MMR."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from schemas.query import Signal
from services.common.userstore.read import Interaction, UserModel
from services.common.vectorindex import (
    Hit,
    ItemFilter,
    Similarities,
    StoredItem,
    VectorLike,
    unit_rows,
)
from services.query.config import QueryConfig
from services.query.engine import QueryEngine

NOW = datetime(2024, 5, 1, tzinfo=UTC)
TENANT = "acme"

# item -> (vector, tags): two "space" films, two "cooking" ones, one in between
ITEMS: dict[str, tuple[list[float], list[str]]] = {
    "apollo": ([1.0, 0.0, 0.0], ["space"]),
    "orbit": ([0.95, 0.31, 0.0], ["space"]),
    "mars": ([0.9, 0.0, 0.44], ["space"]),
    "bread": ([0.0, 1.0, 0.0], ["cooking"]),
    "pasta": ([0.0, 0.95, 0.31], ["cooking"]),
    "picnic": ([0.5, -0.3, 0.8], ["cooking", "space"]),
}


def stored(item_id: str, *, with_vector: bool = True) -> StoredItem:
    vector, tags = ITEMS[item_id]
    return StoredItem(
        TENANT, item_id, 1, {"tenant": TENANT, "item_id": item_id, "title": item_id.title(),
                             "tags": tags, "meta": {}},
        vector=list(vector) if with_vector else None,
    )  # fmt: skip


class FakeIndex:
    dimension = 3

    async def search(self, vector: VectorLike, item_filter: ItemFilter, limit: int) -> list[Hit]:
        query = np.asarray(vector, dtype=np.float64)
        hits = []
        for item_id in ITEMS:
            item = stored(item_id, with_vector=False)
            if item_filter.matches(item):
                other = np.asarray(ITEMS[item_id][0])
                score = float(query @ other / np.linalg.norm(query) / np.linalg.norm(other))
                hits.append(Hit(item, score))
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]

    async def search_ids(
        self, vector: VectorLike, item_filter: ItemFilter, limit: int
    ) -> list[tuple[str, float]]:
        return [(h.item.item_id, h.score) for h in await self.search(vector, item_filter, limit)]

    async def score(
        self, vector: VectorLike, item_filter: ItemFilter, item_ids: Collection[str]
    ) -> dict[str, float]:
        hits = await self.search(vector, item_filter, len(ITEMS))
        return {h.item.item_id: h.score for h in hits if h.item.item_id in item_ids}

    async def read_meta(self, key: str) -> dict[str, Any] | None:
        return None  # no embedder's watermarks: one catalogue throughout

    async def read_metas(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {}

    async def similarities(
        self, tenant: str, item_ids: Sequence[str], queries: Sequence[VectorLike]
    ) -> Similarities:
        found = [i for i in item_ids if i in ITEMS]
        rows = unit_rows([ITEMS[i][0] for i in found]) if found else np.zeros((0, 3))
        return found, (rows @ unit_rows(queries).T).astype(np.float32)

    async def retrieve(
        self, tenant: str, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredItem]:
        return [stored(i, with_vector=with_vectors) for i in item_ids if i in ITEMS]


class FakeReader:
    def __init__(
        self,
        recent: Mapping[str, list[tuple[str, float]]],
        trending: list[tuple[str, float]],
        popular: list[tuple[str, float]],
        co: Mapping[str, list[tuple[str, float]]],
        tags: Mapping[str, dict[str, float]] | None = None,
    ) -> None:
        self.recent, self._trending, self._popular, self.co = recent, trending, popular, co
        self.tags = tags or {}

    async def user(self, tenant: str, user_id: str, **_: Any) -> UserModel:
        recent = [
            Interaction(item, strength, NOW - timedelta(days=n))
            for n, (item, strength) in enumerate(self.recent.get(user_id, []))
        ]
        return UserModel(
            tenant, user_id, len(recent), None, None, None, {}, recent,
            dict(self.tags.get(user_id, {})),
        )  # fmt: skip

    async def version(self, tenant: str, user_id: str) -> tuple[str, ...]:
        return (repr(self.recent.get(user_id)), repr(self.tags.get(user_id)))

    async def trending(self, tenant: str, limit: int, **_: Any) -> list[tuple[str, float]]:
        return self._trending[:limit]

    async def popular(self, tenant: str, limit: int) -> list[tuple[str, float]]:
        return self._popular[:limit]

    async def cooccurring(
        self, tenant: str, item_ids: Sequence[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        return {i: self.co.get(i, [])[:limit] for i in item_ids}


WEIGHTS: dict[Signal, float] = {
    "content": 1.0, "cooccurrence": 0.5, "trending": 0.25, "popular": 1.0, "tags": 0.5,
}  # fmt: skip


def engine(reader: FakeReader, **config: Any) -> QueryEngine:
    return QueryEngine(
        reader,  # type: ignore[arg-type]
        FakeIndex(),  # type: ignore[arg-type]
        object(),  # type: ignore[arg-type]
        QueryConfig(recommend_weights=WEIGHTS, **config),
    )


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader(
        recent={"ann": [("apollo", 4.0)]},
        trending=[("bread", 9.0), ("pasta", 3.0), ("orbit", 1.0)],
        popular=[("bread", 400.0), ("apollo", 300.0), ("pasta", 200.0), ("mars", 100.0)],
        co={"apollo": [("mars", 5.0), ("bread", 1.0)]},
        tags={"ann": {"space": 2.0}},
    )


async def ids(
    query: QueryEngine, user: str = "ann", *, item_filter: ItemFilter | None = None, **options: Any
) -> tuple[str, list[str]]:
    strategy, results = await query.recommendations(
        TENANT, user, limit=3, item_filter=item_filter or ItemFilter(tenant=TENANT), **options
    )
    return strategy, [r.item_id for r in results]


async def test_the_blend_uses_every_signal_and_explains_it(reader: FakeReader) -> None:
    strategy, results = await engine(reader).recommendations(
        TENANT, "ann", limit=3, item_filter=ItemFilter(tenant=TENANT)
    )
    assert strategy == "personalized"
    assert "apollo" not in [r.item_id for r in results]  # seen
    mars = next(r for r in results if r.item_id == "mars")
    signals = {r.signal: r for r in mars.reasons}
    assert set(signals) == {"content", "cooccurrence", "popular", "tags"}
    assert signals["cooccurrence"].score == 1.0  # the strongest co-occurrence, scaled
    assert signals["popular"].weight == 1.0
    assert signals["popular"].detail == "popular overall"
    assert "'Apollo'" in (signals["cooccurrence"].detail or "")
    assert mars.score == pytest.approx(sum(r.contribution for r in mars.reasons), abs=1e-3)


async def test_per_request_weights_override_the_configuration(reader: FakeReader) -> None:
    query = engine(reader)
    _, popular_only = await ids(query, weights={"content": 0, "cooccurrence": 0, "tags": 0,
                                                "trending": 0, "popular": 1})  # fmt: skip
    assert popular_only == ["bread", "pasta", "mars"]
    _, content_only = await ids(query, weights={"content": 1, "cooccurrence": 0, "tags": 0,
                                                "trending": 0, "popular": 0})  # fmt: skip
    assert content_only[:2] == ["orbit", "mars"]  # nearest to apollo
    _, partial = await ids(query, weights={"popular": 0})  # the others as configured
    assert "bread" not in partial[:1]
    _, results = await query.recommendations(
        TENANT, "ann", limit=3, item_filter=ItemFilter(tenant=TENANT), weights={"trending": 2.0}
    )
    assert all(r.weight == 2.0 for item in results for r in item.reasons if r.signal == "trending")
    assert query.config.weights({"trending": 2.0})["trending"] == 2.0
    assert query.config.recommend_weights["trending"] == 0.25  # the configuration is unchanged


async def test_explicit_exclusions_add_to_the_seen_items(reader: FakeReader) -> None:
    _, found = await ids(
        engine(reader), item_filter=ItemFilter(tenant=TENANT, exclude_item_ids={"mars", "bread"})
    )
    assert not {"apollo", "mars", "bread"} & set(found)


async def test_popularity_under_its_evidence_counts_proportionally_less(
    reader: FakeReader,
) -> None:
    query = engine(reader, popular_evidence=800.0)
    candidates = await query.recommendation_candidates(
        TENANT, "ann", limit=3, item_filter=ItemFilter(tenant=TENANT)
    )
    assert candidates.signals["popular"]["bread"] == 0.5  # 400 of the 800 needed
    plain = await engine(reader).recommendation_candidates(
        TENANT, "ann", limit=3, item_filter=ItemFilter(tenant=TENANT)
    )
    assert plain.signals["popular"]["bread"] == 1.0


async def test_a_user_without_history_gets_trending_and_popularity_as_weighted(
    reader: FakeReader,
) -> None:
    query = engine(reader)
    strategy, found = await ids(query, "nobody")
    assert strategy == "trending"
    assert found[0] == "bread"  # first in both
    strategy, found = await ids(query, "nobody", weights={"trending": 0.0})
    assert (strategy, found) == ("popular", ["bread", "apollo", "pasta"])
    strategy, found = await ids(query, "nobody", weights={"trending": 0.0, "popular": 0.0})
    assert (strategy, found) == ("trending", ["bread", "pasta", "orbit"])  # the fallback
    _, results = await query.recommendations(
        TENANT, "nobody", limit=1, item_filter=ItemFilter(tenant=TENANT)
    )
    assert {r.signal for r in results[0].reasons} == {"trending", "popular"}


async def test_no_history_and_no_activity_gives_nothing() -> None:
    empty = FakeReader(recent={}, trending=[], popular=[], co={})
    assert await ids(engine(empty), "nobody") == ("none", [])


async def test_candidates_rank_the_same_as_a_request(reader: FakeReader) -> None:
    query = engine(reader)
    candidates = await query.recommendation_candidates(
        TENANT, "ann", limit=3, item_filter=ItemFilter(tenant=TENANT)
    )
    weightings: tuple[dict[Signal, float] | None, ...] = (
        {"popular": 0.0},
        {"content": 0.0, "tags": 2.0},
        None,
    )
    for weights in weightings:
        ranked = await query.rank(candidates, limit=3, weights=weights)
        direct = await query.recommendations(
            TENANT, "ann", limit=3, item_filter=ItemFilter(tenant=TENANT), weights=weights
        )
        assert ranked == direct


async def test_diversity_reranks_by_mmr_and_keeps_the_reasons(reader: FakeReader) -> None:
    query = engine(reader)
    content: dict[Signal, float] = {"content": 1, "cooccurrence": 0, "trending": 0,
                                    "popular": 0, "tags": 0}  # fmt: skip
    _, plain = await ids(query, weights=content)
    _, diverse = await ids(query, weights=content, diversity=0.7)
    assert plain[:2] == ["orbit", "mars"]  # both close to apollo and to each other
    assert diverse[0] == "orbit"
    assert diverse[1] != "mars"  # something unlike orbit comes second
    _, results = await query.recommendations(
        TENANT, "ann", limit=3, item_filter=ItemFilter(tenant=TENANT), weights=content,
        diversity=0.7,
    )  # fmt: skip
    assert all(r.reasons for r in results)
    configured = engine(reader, recommend_diversity=0.7)
    assert await ids(configured, weights=content) == ("personalized", diverse)
