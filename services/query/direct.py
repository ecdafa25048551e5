"""The hot read routes, served by Starlette directly. Answering a recommendation from a
user's kept candidates costs less than FastAPI's per-request routing and dependency
solving around it, so recommendations, similar items and trending skip those: each
parses its parameters with the same model as the route FastAPI declares for the OpenAPI
document (services/query/routes.py), into the same errors, and calls the same function.
The middlewares and error handlers are the app's, as for every route."""

from __future__ import annotations

import functools
import typing
from typing import TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from schemas.query import ItemsQuery, RecommendationsQuery
from services.common.http import resolve_tenant
from services.query.routes import MAX_ID_LENGTH, get_engine, recommend, similar_to, trending_now

Model = TypeVar("Model", bound=BaseModel)


@functools.cache
def _repeated(model: type[BaseModel]) -> frozenset[str]:
    """The model's list fields: given as repeated query parameters."""
    return frozenset(
        name
        for name, field in model.model_fields.items()
        if typing.get_origin(field.annotation) is list
    )


def parsed_query(model: type[Model], request: Request) -> Model:
    """The request's query parameters as ``model``; invalid ones raise the error
    FastAPI raises for them (rendered by the app's handler)."""
    params = request.query_params
    repeated = _repeated(model)
    given = {
        name: params.getlist(name) if name in repeated else params[name]
        for name in model.model_fields
        if name in params
    }
    try:
        return model.model_validate(given)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in error.errors()]
        ) from None


def path_id(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    if len(value) > MAX_ID_LENGTH:
        raise RequestValidationError(
            [{"loc": ("path", name), "msg": f"String should have at most {MAX_ID_LENGTH} "
              "characters", "type": "string_too_long"}]
        )  # fmt: skip
    return value


def _tenant(request: Request) -> str:
    return resolve_tenant(request, request.app.state.settings, "read")


async def recommendations(request: Request) -> Response:
    tenant = _tenant(request)
    user_id = path_id(request, "user_id")
    query = parsed_query(RecommendationsQuery, request)
    return await recommend(await get_engine(request), tenant, user_id, query)


async def similar(request: Request) -> Response:
    tenant = _tenant(request)
    item_id = path_id(request, "item_id")
    query = parsed_query(ItemsQuery, request)
    return await similar_to(await get_engine(request), tenant, item_id, query)


async def trending(request: Request) -> Response:
    tenant = _tenant(request)
    query = parsed_query(ItemsQuery, request)
    return await trending_now(await get_engine(request), tenant, query)


class NamedRoute(Route):
    """A route that puts itself in the scope, as FastAPI's own routes do (its router
    leaves that to them): the request metrics label a request by its route's path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child


ROUTES: list[BaseRoute] = [
    NamedRoute("/v1/users/{user_id}/recommendations", recommendations, methods=["GET"]),
    NamedRoute("/v1/items/{item_id}/similar", similar, methods=["GET"]),
    NamedRoute("/v1/trending", trending, methods=["GET"]),
]
"""Matched before the FastAPI routes (see :func:`services.common.http.create_http_app`)."""


__all__ = ["ROUTES", "NamedRoute", "parsed_query", "path_id"]
