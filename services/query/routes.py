"""The query service's HTTP entry: thin route handlers that call :class:`QueryEngine`
(built by :func:`services.query.service.mount`, found on ``app.state``)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from schemas.api import ErrorDetail
from schemas.query import (
    FiltersIn,
    ItemsQuery,
    RecentInteraction,
    RecommendationsQuery,
    RecommendationsResponse,
    SearchRequest,
    SearchResponse,
    SimilarItemsResponse,
    TagAffinity,
    TrendingResponse,
    UserProfileResponse,
)
from services.common.http import ApiError, ReadTenantDep
from services.common.vectorindex import ItemFilter, NumericRange
from services.query.engine import QueryEngine

_CONDITION = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]{0,63})(?P<op>>=|<=|=)(?P<value>.{1,200})$")

MAX_ID_LENGTH = 256
UserIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]
ItemIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]


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


def filters_from_body(tenant: str, filters: FiltersIn) -> ItemFilter:
    return ItemFilter(
        tenant=tenant,
        tags_any=filters.tags_any,
        metadata_equals=filters.metadata,
        metadata_ranges={k: NumericRange(gte=r.gte, lte=r.lte) for k, r in filters.ranges.items()},
    )


query_router = APIRouter(prefix="/v1", tags=["query"])
"""The query API; its handlers read ``app.state.query_engine``."""


def json_of(model: BaseModel) -> Response:
    """``model`` as JSON, serialized once: FastAPI, given a model to return, would dump
    it, validate the dump against the response model and serialize that (~1 ms for ten
    explained results). The route still declares its response model for OpenAPI."""
    return Response(model.model_dump_json(), media_type="application/json")


async def recommend(
    engine: QueryEngine, tenant: str, user_id: str, query: RecommendationsQuery
) -> Response:
    """GET /v1/users/{user_id}/recommendations, parameters parsed (see services/query/direct.py
    for the route that serves it)."""
    item_filter = parse_filters(tenant, query.tags, query.filter)
    if query.exclude:
        item_filter = replace(
            item_filter, exclude_item_ids={*item_filter.exclude_item_ids, *query.exclude}
        )
    weights = query.weights()
    strategy, items = await engine.recommendations(
        tenant, user_id, limit=query.limit, item_filter=item_filter,
        exclude_seen=query.exclude_seen, weights=weights, diversity=query.diversity,
    )  # fmt: skip
    diversity = engine.config.recommend_diversity if query.diversity is None else query.diversity
    return json_of(RecommendationsResponse(
        tenant=tenant, user_id=user_id, strategy=strategy, items=items,
        weights=dict(engine.config.weights(weights)), diversity=diversity,
    ))  # fmt: skip


@query_router.get(
    "/users/{user_id}/recommendations",
    summary="Personalized recommendations, each with the signals behind it",
    response_model=RecommendationsResponse,
)
async def recommendations(
    user_id: UserIdPath, tenant: ReadTenantDep, engine: EngineDep,
    query: Annotated[RecommendationsQuery, Query()],
) -> Response:  # fmt: skip
    # Declared here for the OpenAPI document; served by services.query.direct, which
    # parses the same parameters with the same model and calls the same function.
    return await recommend(engine, tenant, user_id, query)


@query_router.post(
    "/search", summary="Semantic search, optionally personalized", response_model=SearchResponse
)
async def search(request: SearchRequest, tenant: ReadTenantDep, engine: EngineDep) -> Response:
    personalized, items = await engine.search(
        tenant, request.query, limit=request.limit,
        item_filter=filters_from_body(tenant, request.filters), user_id=request.user_id,
    )  # fmt: skip
    return json_of(
        SearchResponse(tenant=tenant, query=request.query, personalized=personalized, items=items)
    )


async def similar_to(engine: QueryEngine, tenant: str, item_id: str, query: ItemsQuery) -> Response:
    """GET /v1/items/{item_id}/similar, parameters parsed (served by services/query/direct.py)."""
    item_filter = parse_filters(tenant, query.tags, query.filter)
    items = await engine.similar(tenant, item_id, limit=query.limit, item_filter=item_filter)
    if items is None:
        raise ApiError(404, "item_not_found", f"no item {item_id!r} in tenant {tenant!r}")
    return json_of(SimilarItemsResponse(tenant=tenant, item_id=item_id, items=items))


@query_router.get(
    "/items/{item_id}/similar",
    summary="Items similar to one item",
    response_model=SimilarItemsResponse,
)
async def similar(
    item_id: ItemIdPath, tenant: ReadTenantDep, engine: EngineDep,
    query: Annotated[ItemsQuery, Query()],
) -> Response:  # fmt: skip
    # Declared for the OpenAPI document; served by services.query.direct (see recommendations).
    return await similar_to(engine, tenant, item_id, query)


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


async def trending_now(engine: QueryEngine, tenant: str, query: ItemsQuery) -> Response:
    """GET /v1/trending, parameters parsed (served by services/query/direct.py)."""
    item_filter = parse_filters(tenant, query.tags, query.filter)
    items = await engine.trending(tenant, limit=query.limit, item_filter=item_filter)
    return json_of(TrendingResponse(tenant=tenant, items=items))


@query_router.get(
    "/trending", summary="What is popular now (time-decayed)", response_model=TrendingResponse
)
async def trending(
    tenant: ReadTenantDep, engine: EngineDep, query: Annotated[ItemsQuery, Query()]
) -> Response:
    # Declared for the OpenAPI document; served by services.query.direct (see recommendations).
    return await trending_now(engine, tenant, query)


__all__ = [
    "MAX_ID_LENGTH", "get_engine", "parse_filters", "query_router", "recommend", "similar_to",
    "trending_now",
]  # fmt: skip
