"""The query service's use cases: recommendations, search, similar items, trending and
the user profile, over the vector index and the user model. HTTP-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Literal

from schemas.query import ItemResult, Signal
from services.common.embedding import Embedder
from services.common.userstore.read import UserModel, UserModelReader
from services.common.vectorindex import ItemFilter, StoredItem, VectorIndex
from services.query.cache import VersionedCache
from services.query.candidates import CandidateGatherer, Candidates, filter_key, title_of
from services.query.catalogue import CatalogueClock
from services.query.config import NON_PERSONAL, QueryConfig, Strategy
from services.query.ranking import (
    Blended,
    Vector,
    blend,
    mmr,
    profile_vector,
    profile_weights,
    scaled,
)


def _result(item: StoredItem, blended: Blended) -> ItemResult:
    payload = item.payload
    return ItemResult(
        item_id=item.item_id,
        score=blended.score,
        title=payload.get("title"),
        tags=list(payload.get("tags", [])),
        metadata=dict(payload.get("meta", {})),
        reasons=blended.reasons,
    )


class QueryEngine:
    def __init__(
        self,
        reader: UserModelReader,
        index: VectorIndex,
        embedder: Embedder,
        config: QueryConfig,
    ) -> None:
        self.reader = reader
        self.index = index
        self.embedder = embedder
        self.config = config
        self.candidates = CandidateGatherer(reader, index, config)
        self.catalogue = CatalogueClock(index, every_s=config.catalogue_check_s)
        # Only a user's own candidates are kept: without history, a user is ranked by
        # the tenant's lists alone, cheap to read and better fresh.
        self.cache: VersionedCache[Candidates] = VersionedCache(
            config.cache_entries,
            config.cache_ttl_s,
            keep=lambda candidates: candidates.personalized,
        )
        self.similar_cache: VersionedCache[list[ItemResult] | None] = VersionedCache(
            config.cache_entries, config.cache_ttl_s, keep=lambda found: found is not None
        )
        # Trending and popular lists are read at most every ranked_cache_s (the reader's
        # cache); what is ranked from them is kept as long.
        self.ranked_cache: VersionedCache[list[ItemResult]] = VersionedCache(
            config.cache_entries if config.ranked_cache_s > 0 else 0, config.ranked_cache_s
        )

    async def close(self) -> None:
        """Stop the background work (gathering kept entries again, reading the catalogue)."""
        await self.cache.close()
        await self.similar_cache.close()
        await self.ranked_cache.close()
        await self.catalogue.close()

    # -- recommendations ---------------------------------------------------------------

    async def recommendations(
        self, tenant: str, user_id: str, *, limit: int, item_filter: ItemFilter,
        exclude_seen: bool = True, weights: Mapping[Signal, float] | None = None,
        diversity: float | None = None,
    ) -> tuple[Strategy, list[ItemResult]]:  # fmt: skip
        """The blend of the user's signals, best first, each result explained.

        ``weights`` override the configured weight of any signal for this request;
        ``diversity`` (0-1, default from the configuration) re-ranks the blend by maximal
        marginal relevance over the items' vectors. Items the user engaged with recently
        are left out with ``exclude_seen``; ``item_filter.exclude_item_ids`` leaves out
        any others (e.g. a full history longer than the user model keeps)."""
        pool = self.candidates.pool(limit)
        key = (tenant, user_id, filter_key(item_filter), exclude_seen, pool)
        version = await self.reader.version(tenant, user_id)
        candidates = await self.cache.get(
            key,
            version,
            partial(
                self.recommendation_candidates, tenant, user_id, limit=limit,
                item_filter=item_filter, exclude_seen=exclude_seen,
            ),
            generation=await self.catalogue.version(),
        )  # fmt: skip
        return await self.rank(candidates, limit=limit, weights=weights, diversity=diversity)

    async def recommendation_candidates(
        self, tenant: str, user_id: str, *, limit: int, item_filter: ItemFilter,
        exclude_seen: bool = True,
    ) -> Candidates:  # fmt: skip
        """Every candidate and each signal's scores, ready for :meth:`rank`."""
        return await self.candidates.gather(
            tenant, user_id, limit=limit, item_filter=item_filter, exclude_seen=exclude_seen
        )

    async def rank(
        self, candidates: Candidates, *, limit: int,
        weights: Mapping[Signal, float] | None = None, diversity: float | None = None,
    ) -> tuple[Strategy, list[ItemResult]]:  # fmt: skip
        """Blend the candidates' signals under the configured weights (with ``weights``
        on top), optionally diversified. A user without history, or whose blend is
        empty, gets the non-personal signals: trending and popularity as weighted, or
        trending alone when both weigh nothing. The result is a function of the
        candidates and the arguments alone: kept with the candidates, a repeated request
        reuses it."""
        asked = (limit, tuple(sorted((weights or {}).items())), diversity)
        ranked = candidates.ranked.get(asked)
        if ranked is None:
            ranked = await self._rank(candidates, limit=limit, weights=weights, diversity=diversity)
            candidates.keep_ranked(asked, ranked)
        return ranked

    async def _rank(
        self, candidates: Candidates, *, limit: int,
        weights: Mapping[Signal, float] | None, diversity: float | None,
    ) -> tuple[Strategy, list[ItemResult]]:  # fmt: skip
        effective = self.config.weights(weights)
        diversity = self.config.recommend_diversity if diversity is None else diversity
        head = limit if diversity <= 0 else max(limit * 5, 50)  # what MMR picks from
        blended: list[Blended] = []
        strategy: Strategy = "personalized"
        if candidates.personalized:
            against = self.config.dislike_factor
            blended = blend(
                candidates.head(effective, head, against), effective, candidates.details,
                limit=head, against=against,
            )  # fmt: skip
        if not blended:
            cold: dict[Signal, float] = {
                s: effective.get(s, 0.0) for s in NON_PERSONAL if effective.get(s, 0.0) > 0
            }
            fallbacks: tuple[dict[Signal, float], ...] = (
                cold or {"trending": 1.0},
                {"popular": 1.0},
            )
            for attempt in fallbacks:
                signals: dict[Signal, Mapping[str, float]] = {
                    s: candidates.signals.get(s, {}) for s in attempt
                }
                blended = blend(signals, attempt, candidates.details, limit=head)
                if blended:
                    strategy = "trending" if "trending" in attempt else "popular"
                    break
        if not blended:
            return "none", []
        if diversity > 0:
            vectors = {
                i.item_id: i.vector
                for i in await self.index.retrieve(
                    candidates.tenant, [b.item_id for b in blended], with_vectors=True
                )
                if i.vector
            }
            blended = mmr(blended, vectors, limit=limit, diversity=diversity)
        return strategy, [_result(candidates.items[b.item_id], b) for b in blended[:limit]]

    # -- trending ----------------------------------------------------------------------

    async def trending(
        self, tenant: str, *, limit: int, item_filter: ItemFilter
    ) -> list[ItemResult]:
        return await self._ranked_by(tenant, "trending", limit, item_filter)

    async def popular(
        self, tenant: str, *, limit: int, item_filter: ItemFilter
    ) -> list[ItemResult]:
        """Items by positive strength, decayed with the popularity half-life (the user
        model's popularity)."""
        return await self._ranked_by(tenant, "popular", limit, item_filter)

    async def _ranked_by(
        self, tenant: str, signal: Literal["trending", "popular"], limit: int,
        item_filter: ItemFilter,
    ) -> list[ItemResult]:  # fmt: skip
        catalogue = await self.catalogue.version()
        return await self.ranked_cache.get(
            (tenant, signal, filter_key(item_filter), limit),
            catalogue,
            partial(self._rank_by, tenant, signal, limit, item_filter),
        )

    async def _rank_by(
        self, tenant: str, signal: Literal["trending", "popular"], limit: int,
        item_filter: ItemFilter,
    ) -> list[ItemResult]:  # fmt: skip
        pool = limit * 4 + len(item_filter.exclude_item_ids)
        ranked = (
            await self.reader.trending(tenant, pool)
            if signal == "trending"
            else await self.reader.popular(tenant, pool)
        )
        items = {i.item_id: i for i in await self.index.retrieve(tenant, [i for i, _ in ranked])}
        scores = scaled({i: s for i, s in ranked if i in items and item_filter.matches(items[i])})
        detail = "trending now" if signal == "trending" else "popular overall"
        blended = blend({signal: scores}, {signal: 1.0}, {signal: dict.fromkeys(scores, detail)})
        return [_result(items[b.item_id], b) for b in blended[:limit]]

    # -- search ------------------------------------------------------------------------

    async def search(
        self, tenant: str, text: str, *, limit: int, item_filter: ItemFilter,
        user_id: str | None = None,
    ) -> tuple[bool, list[ItemResult]]:  # fmt: skip
        query = await self.embedder.embed_query(text)
        profile = await self._profile(tenant, user_id) if user_id else None
        hits = await self.index.search(
            query, item_filter, limit * 3 if profile is not None else limit
        )
        known = {hit.item.item_id: hit.item for hit in hits}
        signals: dict[Signal, Mapping[str, float]] = {
            "query": {h.item.item_id: max(h.score, 0.0) for h in hits}
        }
        details: dict[Signal, Mapping[str, str]] = {
            "query": dict.fromkeys(known, f"matches '{text[:80]}'")
        }
        weights: dict[Signal, float] = {"query": 1.0}
        if profile is not None:
            rated, similarity = await self.index.similarities(tenant, list(known), [profile])
            signals["profile"] = {
                item_id: max(float(score), 0.0)
                for item_id, score in zip(rated, similarity[:, 0].tolist(), strict=True)
            }
            details["profile"] = dict.fromkeys(known, "close to this user's interests")
            weights["profile"] = self.config.search_profile_weight
        blended = blend(signals, weights, details)[:limit]
        return profile is not None, [_result(known[b.item_id], b) for b in blended]

    async def _profile(self, tenant: str, user_id: str) -> Vector | None:
        model = await self.reader.user(tenant, user_id, recent_limit=self.config.recent_items_limit)
        weights = profile_weights(
            [(i.item_id, i.strength, i.last_seen) for i in model.recent],
            limit=self.config.profile_items,
            half_life_days=self.config.profile_half_life_days,
        )
        if not weights:
            return None
        items = await self.index.retrieve(tenant, [w.item_id for w in weights], with_vectors=True)
        return profile_vector({i.item_id: i.vector for i in items if i.vector}, weights)

    # -- similar items -----------------------------------------------------------------

    async def similar(
        self, tenant: str, item_id: str, *, limit: int, item_filter: ItemFilter
    ) -> list[ItemResult] | None:
        """Items like ``item_id``; None when the item is unknown. Kept for the catalogue
        they were found in (see services/query/cache.py)."""
        catalogue = await self.catalogue.version()
        return await self.similar_cache.get(
            (tenant, item_id, filter_key(item_filter), limit),
            catalogue,
            partial(self._similar, tenant, item_id, limit=limit, item_filter=item_filter),
        )

    async def _similar(
        self, tenant: str, item_id: str, *, limit: int, item_filter: ItemFilter
    ) -> list[ItemResult] | None:
        found = await self.index.retrieve(tenant, [item_id], with_vectors=True)
        if not found or not found[0].vector:
            return None
        source = found[0]
        vector = source.vector
        assert vector is not None  # retrieved with vectors
        item_filter = replace(
            item_filter, exclude_item_ids={*item_filter.exclude_item_ids, item_id}
        )
        hits = await self.index.search(vector, item_filter, limit * 3)
        known = {h.item.item_id: h.item for h in hits}
        content = {h.item.item_id: max(h.score, 0.0) for h in hits}
        co = dict((await self.reader.cooccurring(tenant, [item_id], limit * 3))[item_id])
        rated = await self.index.score(vector, item_filter, [i for i in co if i not in known])
        for item in await self.index.retrieve(tenant, list(rated)):
            known[item.item_id] = item
            content[item.item_id] = max(rated[item.item_id], 0.0)
        title = title_of(source, item_id)
        blended = blend(
            {
                "content": content,
                "cooccurrence": scaled({i: s for i, s in co.items() if i in known}),
            },
            {"content": 1.0, "cooccurrence": self.config.similar_cooccurrence_weight},
            {
                "content": dict.fromkeys(content, f"similar in content to {title}"),
                "cooccurrence": dict.fromkeys(
                    co, f"engaged with by people who engaged with {title}"
                ),
            },
        )[:limit]
        return [_result(known[b.item_id], b) for b in blended]

    # -- profile -----------------------------------------------------------------------

    async def profile(self, tenant: str, user_id: str) -> tuple[UserModel, dict[str, str]] | None:
        """The user's model and the titles of their recent items; None for an unknown user."""
        model = await self.reader.user(tenant, user_id, recent_limit=self.config.recent_items_limit)
        if not model.has_history:
            return None
        items = await self.index.retrieve(tenant, [i.item_id for i in model.recent])
        return model, {
            i.item_id: str(i.payload.get("title")) for i in items if i.payload.get("title")
        }


__all__ = ["QueryEngine"]
