"""The query service's use cases: recommendations, search, similar items, trending and
the user profile, over the vector index and the user model. HTTP-free."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from schemas.query import ItemResult, Reason, Signal
from services.common.embedding import Embedder
from services.common.settings import Settings
from services.common.userstore.read import UserModel, UserModelReader
from services.common.vectorindex import ItemFilter, StoredItem, VectorIndex
from services.query.dislikes import closer_to_disliked, net_of_disliked
from services.query.explain import Explained
from services.query.ranking import (
    Blended,
    Vector,
    WeightedItem,
    blend,
    cosine,
    mmr,
    profile_vector,
    profile_weights,
    scaled,
    signed_scaled,
)
from services.query.signals import cooccurrence_scores, tag_affinity_scores

Strategy = Literal["personalized", "trending", "popular", "none"]

RECOMMEND_SIGNALS: tuple[Signal, ...] = ("content", "cooccurrence", "trending", "popular", "tags")
"""The signals a recommendation blends; per-request weights may name any of them."""
NON_PERSONAL: tuple[Signal, ...] = ("trending", "popular")
"""The signals that need no history: what a user without one is ranked by."""
SignalScores = dict[Signal, dict[str, float]]
SignalDetails = dict[Signal, Mapping[str, str]]


@dataclass(frozen=True)
class QueryConfig:
    recommend_weights: Mapping[Signal, float]
    similar_cooccurrence_weight: float = 0.5
    search_profile_weight: float = 0.3
    profile_items: int = 20
    profile_half_life_days: float = 30.0
    recent_items_limit: int = 200
    cooccurrence_sources: int = 10
    cooccurrence_per_source: int = 50
    recommend_diversity: float = 0.0
    popular_evidence: float = 0.0
    disliked_items: int = 10
    dislike_factor: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> QueryConfig:
        return cls(
            recommend_weights={
                "content": settings.recommend_weight_content,
                "cooccurrence": settings.recommend_weight_cooccurrence,
                "trending": settings.recommend_weight_trending,
                "popular": settings.recommend_weight_popular,
                "tags": settings.recommend_weight_tags,
            },
            similar_cooccurrence_weight=settings.similar_weight_cooccurrence,
            search_profile_weight=settings.search_weight_profile,
            profile_items=settings.profile_items,
            profile_half_life_days=settings.profile_half_life_days,
            recent_items_limit=settings.recent_items_limit,
            cooccurrence_sources=settings.recommend_cooccurrence_sources,
            cooccurrence_per_source=settings.recommend_cooccurrence_per_source,
            recommend_diversity=settings.recommend_diversity,
            popular_evidence=settings.recommend_popular_evidence,
            dislike_factor=settings.recommend_dislike_factor,
        )

    def weights(self, overrides: Mapping[Signal, float] | None = None) -> dict[Signal, float]:
        """The configured recommendation weights with a request's overrides on top."""
        return {**self.recommend_weights, **(overrides or {})}


@dataclass
class Candidates:
    """What one user's recommendations are ranked from, whatever the weights: every
    candidate that passes the filter, each signal's 0-1 scores and their explanations.
    ``personalized`` is False for a user without usable history (no positive item)."""

    tenant: str
    user_id: str
    personalized: bool
    items: dict[str, StoredItem] = field(default_factory=dict)
    signals: dict[Signal, dict[str, float]] = field(default_factory=dict)
    details: dict[Signal, Mapping[str, str]] = field(default_factory=dict)


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


def _title(item: StoredItem | None, item_id: str) -> str:
    return f"'{item.payload.get('title') or item_id}'" if item else f"'{item_id}'"


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
        candidates = await self.recommendation_candidates(
            tenant, user_id, limit=limit, item_filter=item_filter, exclude_seen=exclude_seen
        )
        return await self.rank(candidates, limit=limit, weights=weights, diversity=diversity)

    async def recommendation_candidates(
        self, tenant: str, user_id: str, *, limit: int, item_filter: ItemFilter,
        exclude_seen: bool = True,
    ) -> Candidates:  # fmt: skip
        """Gather the candidates and every signal's scores (the weights do not matter
        here, so one gathering can be ranked under many weightings)."""
        model = await self.reader.user(tenant, user_id, recent_limit=self.config.recent_items_limit)
        if exclude_seen:
            seen = {interaction.item_id for interaction in model.recent}
            item_filter = replace(
                item_filter, exclude_item_ids=set(item_filter.exclude_item_ids) | seen
            )
        weights = profile_weights(
            [(i.item_id, i.strength, i.last_seen) for i in model.recent],
            limit=self.config.profile_items,
            half_life_days=self.config.profile_half_life_days,
        )
        disliked = profile_weights(
            [(i.item_id, -i.strength, i.last_seen) for i in model.recent],
            limit=self.config.disliked_items,
            half_life_days=self.config.profile_half_life_days,
        )
        pool = max(limit * 4, 50)
        candidates = Candidates(tenant, user_id, personalized=bool(weights))
        allowed = await self._non_personal(tenant, item_filter, pool)
        wanted = list(dict.fromkeys(i for found in allowed.values() for i, _ in found))
        personal: tuple[SignalScores, SignalDetails] | None = None
        if weights:
            personal = await self._personal(
                candidates, model, weights, disliked, item_filter, pool, wanted
            )
        else:
            candidates.items.update(await self._matching(tenant, wanted, item_filter))
        detail: dict[Signal, str] = {
            "trending": f"trending in {tenant}",
            "popular": "popular overall",
        }
        evidence: dict[Signal, float] = {"popular": self.config.popular_evidence}
        known = candidates.items
        for signal, found in allowed.items():
            scores = scaled(
                {i: s for i, s in found if i in known}, at_least=evidence.get(signal, 0.0)
            )
            candidates.signals[signal] = scores
            candidates.details[signal] = dict.fromkeys(scores, detail[signal])
        if personal is not None:
            candidates.signals.update(personal[0])
            candidates.details.update(personal[1])
        return candidates

    async def _non_personal(
        self, tenant: str, item_filter: ItemFilter, pool: int
    ) -> dict[Signal, list[tuple[str, float]]]:
        """Trending and popularity: the first ``pool`` items of each that are not excluded
        (the exclusions are skipped before the index is asked)."""
        excluded = item_filter.exclude_item_ids
        depth = pool + len(excluded)
        ranked: dict[Signal, list[tuple[str, float]]] = {
            "trending": await self.reader.trending(tenant, depth),
            "popular": await self.reader.popular(tenant, depth),
        }
        return {
            signal: [(i, s) for i, s in found if i not in excluded][:pool]
            for signal, found in ranked.items()
        }

    async def _matching(
        self, tenant: str, item_ids: Sequence[str], item_filter: ItemFilter
    ) -> dict[str, StoredItem]:
        """The items among ``item_ids`` that pass the filter, by id."""
        found = await self.index.retrieve(tenant, item_ids)
        return {item.item_id: item for item in found if item_filter.matches(item)}

    async def _personal(
        self, candidates: Candidates, model: UserModel, weights: list[WeightedItem],
        disliked: list[WeightedItem], item_filter: ItemFilter, pool: int, wanted: Sequence[str],
    ) -> tuple[SignalScores, SignalDetails]:  # fmt: skip
        """Content, co-occurrence and tags over every candidate: the content search's
        hits, the co-occurring items and ``wanted`` (trending and popular); the ones
        that pass the filter go to ``candidates.items``. The index rates the candidates
        against the profile and applies the filter where the vectors are; only the
        payloads of those that pass are read (memoized by the index).

        What the user engaged with negatively (``disliked``) pushes down, each signal
        its way: an item closer to a disliked item than to any liked one loses the
        difference from its content score, co-occurrence with disliked items counts
        against an item, and so do tags with a negative affinity. These scores can go
        below 0; each explanation names the disliked item or tags."""
        tenant = candidates.tenant
        co_weights = weights[: self.config.cooccurrence_sources]
        co_disliked = disliked[: self.config.cooccurrence_sources]
        source_ids = [w.item_id for w in [*weights, *disliked]]
        found_sources, co_found = await asyncio.gather(
            self.index.retrieve(tenant, source_ids, with_vectors=True),
            self.reader.cooccurring(
                tenant,
                list(dict.fromkeys(w.item_id for w in [*co_weights, *co_disliked])),
                limit=self.config.cooccurrence_per_source,
            ),
        )
        sources = {s.item_id: s for s in found_sources}
        profile = profile_vector({k: v.vector for k, v in sources.items() if v.vector}, weights)
        co_scores, co_best = cooccurrence_scores(co_weights, co_found)
        co_against, co_worst = cooccurrence_scores(co_disliked, co_found)
        excluded = item_filter.exclude_item_ids
        co_scores = {i: s for i, s in co_scores.items() if i not in excluded}
        others = list(dict.fromkeys([*co_scores, *wanted]))

        known = candidates.items
        content: dict[str, float] = {}
        if profile is not None:
            hits, rated = await asyncio.gather(
                self.index.search_ids(profile, item_filter, pool),
                self.index.score(profile, item_filter, others),
            )
            for item_id, score in hits:
                content[item_id] = max(score, 0.0)
            for item_id, score in rated.items():
                content.setdefault(item_id, max(score, 0.0))
            known.update((i.item_id, i) for i in await self.index.retrieve(tenant, list(content)))
            content = {i: s for i, s in content.items() if i in known}
        else:
            known.update(await self._matching(tenant, others, item_filter))
        nearest: dict[str, tuple[str, float]] = {}
        if disliked and content:
            nearest = closer_to_disliked(
                await self.index.retrieve(tenant, list(content), with_vectors=True),
                [i for w in weights if (i := sources.get(w.item_id)) is not None],
                [i for w in disliked if (i := sources.get(w.item_id)) is not None],
            )
        for item_id, (_, margin) in nearest.items():
            content[item_id] -= margin

        def content_detail(item_id: str) -> str:
            if item_id not in nearest:
                return "similar to what this user engaged with"
            title = _title(sources.get(nearest[item_id][0]), nearest[item_id][0])
            return f"closer to {title}, which this user disliked, than to anything they liked"

        tag_scores, tag_details = tag_affinity_scores(known.values(), model.tag_affinity)
        co_net = net_of_disliked(co_scores, co_against)
        co_known = signed_scaled({i: s for i, s in co_net.items() if i in known})

        def co_detail(item_id: str) -> str:
            if co_known[item_id] > 0:
                best = co_best[item_id]
                return "engaged with by people who engaged with " + _title(sources.get(best), best)
            worst = co_worst[item_id]
            title = _title(sources.get(worst), worst)
            return f"engaged with by people who engaged with {title}, which this user disliked"

        return (
            {"content": content, "cooccurrence": co_known, "tags": tag_scores},
            {
                "content": Explained(content, content_detail),
                "cooccurrence": Explained(co_known, co_detail),
                "tags": tag_details,
            },
        )

    async def rank(
        self, candidates: Candidates, *, limit: int,
        weights: Mapping[Signal, float] | None = None, diversity: float | None = None,
    ) -> tuple[Strategy, list[ItemResult]]:  # fmt: skip
        """Blend the candidates' signals under the configured weights (with ``weights``
        on top), optionally diversified. A user without history, or whose blend is
        empty, gets the non-personal signals: trending and popularity as weighted, or
        trending alone when both weigh nothing."""
        effective = self.config.weights(weights)
        diversity = self.config.recommend_diversity if diversity is None else diversity
        head = limit if diversity <= 0 else max(limit * 5, 50)  # what MMR picks from
        blended: list[Blended] = []
        strategy: Strategy = "personalized"
        if candidates.personalized:
            blended = blend(
                candidates.signals, effective, candidates.details, limit=head,
                against=self.config.dislike_factor,
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
            with_vectors = await self.index.retrieve(tenant, list(known), with_vectors=True)
            signals["profile"] = {
                i.item_id: max(cosine(profile, i.vector), 0.0) for i in with_vectors if i.vector
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
        """Items like ``item_id``; None when the item is unknown."""
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
        for item in await self.index.retrieve(
            tenant, [i for i in co if i not in known], with_vectors=True
        ):
            if item_filter.matches(item) and item.vector:
                known[item.item_id] = item
                content[item.item_id] = max(cosine(vector, item.vector), 0.0)
        title = _title(source, item_id)
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


__all__ = [
    "NON_PERSONAL",
    "RECOMMEND_SIGNALS",
    "Candidates",
    "QueryConfig",
    "QueryEngine",
    "Reason",
]
