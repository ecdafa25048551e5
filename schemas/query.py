"""HTTP bodies of the query API. Every result says why it was chosen."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.common import MetadataKey
from schemas.content import MetadataValue

Signal = Literal["content", "cooccurrence", "trending", "popular", "tags", "query", "profile"]


class Reason(BaseModel):
    """One signal behind a result, with its share of the final score."""

    signal: Signal
    score: float = Field(
        description="The signal's score for this item, scaled to 0-1; below 0 (down to -1) "
        "it pushes the item down (what the user disliked)."
    )
    weight: float = Field(
        description="The signal's weight in the blend (for a score below 0, times "
        "ATTUNE_RECOMMEND_DISLIKE_FACTOR)."
    )
    contribution: float = Field(description="score x weight: its share of the final score.")
    detail: str | None = Field(default=None, description="What the signal saw, in words.")


class ItemResult(BaseModel):
    item_id: str
    score: float = Field(
        description="Blended score; results are sorted by it unless diversity re-ranked them."
    )
    title: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    reasons: list[Reason] = Field(description="Why this item was chosen, strongest first.")


class RangeIn(BaseModel):
    gte: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> RangeIn:
        if self.gte is None and self.lte is None:
            raise ValueError("give gte, lte or both")
        if self.gte is not None and self.lte is not None and self.gte > self.lte:
            raise ValueError("gte is greater than lte")
        return self


class FiltersIn(BaseModel):
    """Which items may be returned. All given conditions must hold."""

    tags_any: list[str] = Field(default_factory=list, max_length=100,
                                description="At least one of these tags.")  # fmt: skip
    metadata: dict[MetadataKey, str | int | bool] = Field(
        default_factory=dict, max_length=32, description="Metadata fields equal to these values."
    )
    ranges: dict[MetadataKey, RangeIn] = Field(
        default_factory=dict,
        max_length=32,
        description="Numeric metadata fields within these bounds.",
    )


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=2_000, description="Free text.")
    user_id: str | None = Field(
        default=None, max_length=256, description="Personalize the ranking for this user."
    )
    limit: int = Field(default=10, ge=1, le=100)
    filters: FiltersIn = Field(default_factory=FiltersIn)


def _weight(what: str) -> Any:
    return Field(default=None, ge=0.0, le=100.0, description=f"Weight of {what}.")


class ItemsQuery(BaseModel):
    """The query parameters of GET /v1/trending and GET /v1/items/{item_id}/similar."""

    limit: int = Field(default=10, ge=1, le=100, description="How many results.")
    tags: list[str] = Field(
        default_factory=list, max_length=100, description="Only items with any of these tags."
    )
    filter: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Metadata conditions 'key=value', 'key>=number' or 'key<=number'; "
        "repeat for several.",
    )


class RecommendationsQuery(ItemsQuery):
    """The query parameters of GET /v1/users/{user_id}/recommendations."""

    exclude_seen: bool = Field(default=True, description="Leave out what the user saw.")
    exclude: list[str] = Field(
        default_factory=list,
        max_length=1_000,
        description="Item ids to leave out, besides what the user saw.",
    )
    w_content: float | None = _weight("content similarity")
    w_cooccurrence: float | None = _weight("co-occurrence")
    w_trending: float | None = _weight("trending")
    w_popular: float | None = _weight("popularity (ATTUNE_POPULARITY_HALF_LIFE_DAYS)")
    w_tags: float | None = _weight("tag affinity")
    diversity: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Re-rank by maximal marginal relevance: 0 keeps the blend's order, 1 "
        "favours items unlike those already listed (default: ATTUNE_RECOMMEND_DIVERSITY).",
    )

    def weights(self) -> dict[Signal, float]:
        """The weights this request overrides; the others keep the configured ones."""
        given: dict[Signal, float | None] = {
            "content": self.w_content,
            "cooccurrence": self.w_cooccurrence,
            "trending": self.w_trending,
            "popular": self.w_popular,
            "tags": self.w_tags,
        }
        return {signal: weight for signal, weight in given.items() if weight is not None}


class RecommendationsResponse(BaseModel):
    tenant: str
    user_id: str
    strategy: Literal["personalized", "trending", "popular", "none"] = Field(
        description="'trending' (or 'popular') for a user without usable history."
    )
    items: list[ItemResult]
    weights: dict[str, float] = Field(
        default_factory=dict, description="The signal weights this request was blended with."
    )
    diversity: float = Field(
        default=0.0, description="The MMR diversity applied (0: the blend's order)."
    )


class SearchResponse(BaseModel):
    tenant: str
    query: str
    personalized: bool
    items: list[ItemResult]


class SimilarItemsResponse(BaseModel):
    tenant: str
    item_id: str
    items: list[ItemResult]


class TrendingResponse(BaseModel):
    tenant: str
    items: list[ItemResult]


class RecentInteraction(BaseModel):
    item_id: str
    title: str | None = None
    strength: float = Field(description="Summed strength of the user's events on the item.")
    last_seen: datetime


class TagAffinity(BaseModel):
    tag: str
    affinity: float = Field(description="Time-decayed strength of the user's interest.")


class UserProfileResponse(BaseModel):
    tenant: str
    user_id: str
    events: int
    first_seen: datetime | None
    last_seen: datetime | None
    mean_rating: float | None
    event_counts: dict[str, int]
    recent: list[RecentInteraction] = Field(description="Newest first.")
    tag_affinity: list[TagAffinity] = Field(description="Strongest first.")
    traits: dict[str, Any] = Field(default_factory=dict)


__all__ = [
    "FiltersIn",
    "ItemResult",
    "ItemsQuery",
    "MetadataValue",
    "RangeIn",
    "Reason",
    "RecentInteraction",
    "RecommendationsQuery",
    "RecommendationsResponse",
    "SearchRequest",
    "SearchResponse",
    "Signal",
    "SimilarItemsResponse",
    "TagAffinity",
    "TrendingResponse",
    "UserProfileResponse",
]
