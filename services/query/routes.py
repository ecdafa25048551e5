"""The query service's HTTP entry: thin route handlers that call :class:`QueryEngine`
(built by :func:`services.query.service.mount`, found on ``app.state``)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from schemas.api import ErrorDetail
from schemas.query import (
    FiltersIn,
    RecentInteraction,
    RecommendationsResponse,
    SearchRequest,
    SearchResponse,
    Signal,
    SimilarItemsResponse,
    TagAffinity,
    TrendingResponse,
    UserProfileResponse,
)
from services.common.http import ApiError, ReadTenantDep
from services.common.vectorindex import ItemFilter, NumericRange
from services.query.engine import QueryEngine

_CONDITION = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]{0,63})(?P<op>>=|<=|=)(?P<value>.{1,200})$")

UserIdPath = Annotated[str, Path(min_length=1, max_length=256)]
Limit = Annotated[int, Query(ge=1, le=100, description="How many results.")]
Tags = Annotated[list[str], Query(max_length=100, description="Only items with any of these tags.")]
Filters = Annotated[
    list[str],
    Query(
        alias="filter",
        max_length=50,
        description="Metadata conditions 'key=value', 'key>=number' or 'key<=number'; "
        "repeat for several.",
    ),
]


Exclude = Annotated[
    list[str],
    Query(max_length=1_000, description="Item ids to leave out, besides what the user saw."),
]
Diversity = Annotated[
    float | None,
    Query(
        ge=0.0,
        le=1.0,
        description="Re-rank by maximal marginal relevance: 0 keeps the blend's order, 1 "
        "favours items unlike those already listed (default: ATTUNE_RECOMMEND_DIVERSITY).",
    ),
]


async def get_weight_overrides(
    w_content: Annotated[
        float | None, Query(ge=0.0, le=100.0, description="Weight of content similarity.")
    ] = None,
    w_cooccurrence: Annotated[
        float | None, Query(ge=0.0, le=100.0, description="Weight of co-occurrence.")
    ] = None,
    w_trending: Annotated[
        float | None, Query(ge=0.0, le=100.0, description="Weight of trending.")
    ] = None,
    w_popular: Annotated[
        float | None,
        Query(
            ge=0.0, le=100.0, description="Weight of popularity (ATTUNE_POPULARITY_HALF_LIFE_DAYS)."
        ),
    ] = None,
    w_tags: Annotated[
        float | None, Query(ge=0.0, le=100.0, description="Weight of tag affinity.")
    ] = None,
) -> dict[Signal, float]:
    """Per-request weights of the recommendation signals; absent ones keep the configured
    weight (ATTUNE_RECOMMEND_WEIGHT_*). The dependencies here are ``async``: FastAPI runs
    a plain ``def`` one in a worker thread, a hop per dependency per request."""
    given: dict[Signal, float | None] = {
        "content": w_content,
        "cooccurrence": w_cooccurrence,
        "trending": w_trending,
        "popular": w_popular,
        "tags": w_tags,
    }
    return {signal: weight for signal, weight in given.items() if weight is not None}


async def get_engine(request: Request) -> QueryEngine:
    engine: QueryEngine | None = getattr(request.app.state, "query_engine", None)
    if engine is None:
        raise ApiError(503, "unavailable", "the query engine is not ready")
    return engine


EngineDep = Annotated[QueryEngine, Depends(get_engine)]


def _typed(value: str) -> str | int | bool:
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        return value


def parse_filters(tenant: str, tags: list[str], conditions: list[str]) -> ItemFilter:
    """GET-style filters: ``tags`` and ``filter=key=value|key>=n|key<=n``."""
    equals: dict[str, str | int | bool] = {}
    ranges: dict[str, NumericRange] = {}
    for condition in conditions:
        match = _CONDITION.match(condition)
        if match is None:
            raise ApiError(
                422, "validation_error", f"invalid filter {condition!r}",
                details=[ErrorDetail(field="filter", message="use key=value, key>=n or key<=n")],
            )  # fmt: skip
        key, op, value = match["key"], match["op"], match["value"]
        if op == "=":
            equals[key] = _typed(value)
            continue
        try:
            bound = float(value)
        except ValueError:
            raise ApiError(
                422, "validation_error", f"{key}{op} needs a number",
                details=[ErrorDetail(field="filter", message=f"{value!r} is not a number")],
            ) from None  # fmt: skip
        current = ranges.get(key, NumericRange())
        ranges[key] = (
            NumericRange(gte=bound, lte=current.lte)
            if op == ">="
            else NumericRange(gte=current.gte, lte=bound)
        )
    return ItemFilter(tenant=tenant, tags_any=tags, metadata_equals=equals, metadata_ranges=ranges)


async def get_item_filter(
    tenant: ReadTenantDep,
    tags: Tags = [],  # noqa: B006
    filters: Filters = [],  # noqa: B006
) -> ItemFilter:
    return parse_filters(tenant, tags, filters)


ItemFilterDep = Annotated[ItemFilter, Depends(get_item_filter)]


def filters_from_body(tenant: str, filters: FiltersIn) -> ItemFilter:
    return ItemFilter(
        tenant=tenant,
        tags_any=filters.tags_any,
        metadata_equals=filters.metadata,
        metadata_ranges={k: NumericRange(gte=r.gte, lte=r.lte) for k, r in filters.ranges.items()},
    )


query_router = APIRouter(prefix="/v1", tags=["query"])
"""The query API; its handlers read ``app.state.query_engine``."""


@query_router.get(
    "/users/{user_id}/recommendations",
    summary="Personalized recommendations, each with the signals behind it",
)
async def recommendations(
    user_id: UserIdPath, tenant: ReadTenantDep, item_filter: ItemFilterDep, engine: EngineDep,
    limit: Limit = 10,
    exclude_seen: Annotated[bool, Query(description="Leave out what the user saw.")] = True,
    exclude: Exclude = [],  # noqa: B006
    weights: Annotated[dict[Signal, float], Depends(get_weight_overrides)] = {},  # noqa: B006
    diversity: Diversity = None,
) -> RecommendationsResponse:  # fmt: skip
    if exclude:
        item_filter = replace(
            item_filter, exclude_item_ids={*item_filter.exclude_item_ids, *exclude}
        )
    strategy, items = await engine.recommendations(
        tenant, user_id, limit=limit, item_filter=item_filter, exclude_seen=exclude_seen,
        weights=weights, diversity=diversity,
    )  # fmt: skip
    return RecommendationsResponse(
        tenant=tenant, user_id=user_id, strategy=strategy, items=items,
        weights=dict(engine.config.weights(weights)),
        diversity=engine.config.recommend_diversity if diversity is None else diversity,
    )  # fmt: skip


@query_router.post("/search", summary="Semantic search, optionally personalized")
async def search(
    request: SearchRequest, tenant: ReadTenantDep, engine: EngineDep
) -> SearchResponse:
    personalized, items = await engine.search(
        tenant, request.query, limit=request.limit,
        item_filter=filters_from_body(tenant, request.filters), user_id=request.user_id,
    )  # fmt: skip
    return SearchResponse(
        tenant=tenant, query=request.query, personalized=personalized, items=items
    )


@query_router.get("/items/{item_id}/similar", summary="Items similar to one item")
async def similar(
    item_id: Annotated[str, Path(min_length=1, max_length=256)], tenant: ReadTenantDep,
    item_filter: ItemFilterDep, engine: EngineDep, limit: Limit = 10,
) -> SimilarItemsResponse:  # fmt: skip
    items = await engine.similar(tenant, item_id, limit=limit, item_filter=item_filter)
    if items is None:
        raise ApiError(404, "item_not_found", f"no item {item_id!r} in tenant {tenant!r}")
    return SimilarItemsResponse(tenant=tenant, item_id=item_id, items=items)


@query_router.get("/users/{user_id}", summary="The user's folded model, readable")
async def user_profile(
    user_id: UserIdPath, tenant: ReadTenantDep, engine: EngineDep
) -> UserProfileResponse:
    found = await engine.profile(tenant, user_id)
    if found is None:
        raise ApiError(404, "user_not_found", f"no events for user {user_id!r} in {tenant!r}")
    model, titles = found
    return UserProfileResponse(
        tenant=tenant,
        user_id=user_id,
        events=model.events,
        first_seen=model.first_seen,
        last_seen=model.last_seen,
        mean_rating=model.mean_rating,
        event_counts=model.event_counts,
        recent=[
            RecentInteraction(
                item_id=i.item_id,
                title=titles.get(i.item_id),
                strength=round(i.strength, 4),
                last_seen=i.last_seen,
            )
            for i in model.recent
        ],
        tag_affinity=[
            TagAffinity(tag=tag, affinity=round(value, 4))
            for tag, value in model.tag_affinity.items()
        ],
        traits=dict(model.traits),
    )


@query_router.get("/trending", summary="What is popular now (time-decayed)")
async def trending(
    tenant: ReadTenantDep, item_filter: ItemFilterDep, engine: EngineDep, limit: Limit = 10
) -> TrendingResponse:
    items = await engine.trending(tenant, limit=limit, item_filter=item_filter)
    return TrendingResponse(tenant=tenant, items=items)


__all__ = ["get_engine", "parse_filters", "query_router"]
