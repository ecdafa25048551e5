"""Gathering what one user's recommendations are ranked from: every candidate item and
each signal's scores, with what explains them. The weights do not matter here, so one
gathering can be ranked under many weightings (the evaluation does)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.query import Signal
from services.common.userstore.read import UserModel, UserModelReader
from services.common.vectorindex import ItemFilter, StoredItem, VectorIndex
from services.query.config import QueryConfig
from services.query.dislikes import closer_to_disliked, net_of_disliked
from services.query.explain import Explained
from services.query.packed import PackedSignals
from services.query.ranking import (
    WeightedItem,
    profile_vector,
    profile_weights,
    scaled,
    signed_scaled,
)
from services.query.signals import cooccurrence_scores, tag_affinity_scores

RANKINGS_KEPT = 8
"""Per candidates: a user's requests mostly repeat a few weightings and limits."""

SignalScores = dict[Signal, dict[str, float]]
SignalDetails = dict[Signal, Mapping[str, str]]


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
    _packed: PackedSignals | None = field(default=None, repr=False, compare=False)
    ranked: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False)
    """What :meth:`QueryEngine.rank` made of these candidates, by its arguments."""

    def keep_ranked(self, asked: Hashable, ranked: Any) -> None:
        if len(self.ranked) >= RANKINGS_KEPT:
            self.ranked.clear()
        self.ranked[asked] = ranked

    @property
    def packed(self) -> PackedSignals:
        """The signals as a matrix (packed once, on first use: ranked many times)."""
        if self._packed is None:
            self._packed = PackedSignals.of(self.signals)
        return self._packed

    def head(
        self, weights: Mapping[Signal, float], head: int, against: float
    ) -> dict[Signal, dict[str, float]]:
        """The signals of the candidates that can make the ``head`` best under
        ``weights`` (see :meth:`PackedSignals.preselect`)."""
        chosen = self.packed.preselect(weights, head, against)
        return {
            signal: {i: scores[i] for i in chosen if i in scores}
            for signal, scores in self.signals.items()
        }


def filter_key(item_filter: ItemFilter) -> Hashable:
    """Equal for filters that let the same items through."""
    return (
        item_filter.tenant,
        tuple(sorted(item_filter.tags_any)),
        tuple(sorted(item_filter.metadata_equals.items(), key=lambda kv: kv[0])),
        tuple(sorted(item_filter.metadata_ranges.items(), key=lambda kv: kv[0])),
        frozenset(item_filter.exclude_item_ids),
    )


def title_of(item: StoredItem | None, item_id: str) -> str:
    return f"'{item.payload.get('title') or item_id}'" if item else f"'{item_id}'"


class CandidateGatherer:
    """Reads the user model and the vector index for one user's candidates."""

    def __init__(self, reader: UserModelReader, index: VectorIndex, config: QueryConfig) -> None:
        self.reader = reader
        self.index = index
        self.config = config

    @staticmethod
    def pool(limit: int) -> int:
        """How many candidates each source gives for ``limit`` results."""
        return max(limit * 4, 50)

    async def gather(
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
        pool = self.pool(limit)
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
        against = [i for w in disliked if (i := sources.get(w.item_id)) is not None and i.vector]
        if against and content:
            liked = [i for w in weights if (i := sources.get(w.item_id)) is not None and i.vector]
            compared, similarity = await self.index.similarities(
                tenant, list(content), [i.vector or () for i in [*against, *liked]]
            )
            nearest = closer_to_disliked(
                compared, similarity[:, : len(against)], similarity[:, len(against) :],
                [i.item_id for i in against],
            )  # fmt: skip
        for item_id, (_, margin) in nearest.items():
            content[item_id] -= margin

        # The explanations outlive this call (candidates are kept): they hold the sources'
        # titles, not the sources (whose vectors are lists of 384 Python floats each).
        titles = {item_id: title_of(item, item_id) for item_id, item in sources.items()}

        def source_title(item_id: str) -> str:
            return titles.get(item_id) or title_of(None, item_id)

        def content_detail(item_id: str) -> str:
            if item_id not in nearest:
                return "similar to what this user engaged with"
            title = source_title(nearest[item_id][0])
            return f"closer to {title}, which this user disliked, than to anything they liked"

        tag_scores, tag_details = tag_affinity_scores(known.values(), model.tag_affinity)
        co_net = net_of_disliked(co_scores, co_against)
        co_known = signed_scaled({i: s for i, s in co_net.items() if i in known})

        def co_detail(item_id: str) -> str:
            if co_known[item_id] > 0:
                return "engaged with by people who engaged with " + source_title(co_best[item_id])
            title = source_title(co_worst[item_id])
            return f"engaged with by people who engaged with {title}, which this user disliked"

        return (
            {"content": content, "cooccurrence": co_known, "tags": tag_scores},
            {
                "content": Explained(content, content_detail),
                "cooccurrence": Explained(co_known, co_detail),
                "tags": tag_details,
            },
        )


__all__ = [
    "CandidateGatherer", "Candidates", "SignalDetails", "SignalScores", "filter_key", "title_of",
]  # fmt: skip
