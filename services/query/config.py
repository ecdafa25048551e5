"""The query service's configuration: the signals recommendations blend and the
settings the use cases read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from schemas.query import Signal
from services.common.settings import Settings

Strategy = Literal["personalized", "trending", "popular", "none"]

RECOMMEND_SIGNALS: tuple[Signal, ...] = ("content", "cooccurrence", "trending", "popular", "tags")
"""The signals a recommendation blends; per-request weights may name any of them."""
NON_PERSONAL: tuple[Signal, ...] = ("trending", "popular")
"""The signals that need no history: what a user without one is ranked by."""


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
    cache_entries: int = 2_000
    cache_ttl_s: float = 300.0
    catalogue_check_s: float = 1.0
    ranked_cache_s: float = 0.0

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
            cache_entries=settings.query_cache_entries,
            cache_ttl_s=settings.query_cache_ttl_s,
            ranked_cache_s=settings.query_ranked_cache_s,
        )

    def weights(self, overrides: Mapping[Signal, float] | None = None) -> dict[Signal, float]:
        """The configured recommendation weights with a request's overrides on top."""
        return {**self.recommend_weights, **(overrides or {})}


__all__ = ["NON_PERSONAL", "RECOMMEND_SIGNALS", "QueryConfig", "Strategy"]
