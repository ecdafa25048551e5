"""Asking the system under evaluation: each user's candidates through the query
service's engine, the HTTP route for a sample of users, and the API's default request
(what the user has seen excluded by the user model alone)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.console import Console

from bench.relevance.measures import novelty_share
from bench.relevance.phases import LIST_LENGTH, Phase, Row, progress_bar
from bench.relevance.selection import Weights
from bench.relevance.variants import FoldVariant
from services.app.bootstrap import Dependencies, Service, http_app, mount, serve_http
from services.app.embedded import free_port
from services.common.vectorindex import ItemFilter
from services.query.engine import QueryEngine

# -- ranking ---------------------------------------------------------------------------


async def gather_candidates(
    engine: QueryEngine, phase: Phase, rows: Sequence[Row], tenant: str, console: Console,
    label: str,
) -> None:  # fmt: skip
    """Add ``rows`` to the phase with their candidates, gathered as of now."""
    with progress_bar(console, f"{label}: candidates per user", len(rows)) as update:
        for n, row in enumerate(rows, start=1):
            item_filter = ItemFilter(tenant=tenant, exclude_item_ids=row.history)
            phase.candidates.append(
                await engine.recommendation_candidates(
                    tenant, row.user_id, limit=LIST_LENGTH, item_filter=item_filter
                )
            )
            phase.rows.append(row)
            update(n)


# -- the HTTP route, for a sample ------------------------------------------------------


def _get_json(url: str, headers: Mapping[str, str]) -> Any:
    request = urllib.request.Request(url, headers=dict(headers))
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def check_http_route(
    deps: Dependencies, variant: FoldVariant, phase: Phase, tenant: str, weights: Weights,
    users: int,
) -> dict[str, Any]:  # fmt: skip
    """Ask ``GET /v1/users/{id}/recommendations`` (per-request weights, explicit
    exclusions) of a query app built from the variant's settings, reading as of the
    same moment, for a few users and compare with the in-process lists."""
    sample = phase.where(lambda row: 0 < len(row.history) <= 300)[:users]
    variant_deps = dataclasses.replace(deps, settings=variant.settings)
    app = http_app(variant.settings, [mount(Service.query, variant_deps)], "query")
    app.state.query_engine.reader.clock = variant.engine.reader.clock
    port = free_port()
    identical = 0
    async with serve_http(app, "127.0.0.1", port):
        for n in sample:
            row = phase.rows[n]
            params: list[tuple[str, str]] = [("limit", str(LIST_LENGTH))]
            params += [(f"w_{s}", repr(w)) for s, w in weights.items()]
            params += [("exclude", i) for i in sorted(row.history)]
            url = (
                f"http://127.0.0.1:{port}/v1/users/{urllib.parse.quote(row.user_id)}"
                f"/recommendations?{urllib.parse.urlencode(params)}"
            )
            body = await asyncio.to_thread(_get_json, url, {"X-Attune-Tenant": tenant})
            identical += [i["item_id"] for i in body["items"]] == phase.lists["blend"][n]
    return {"users": len(sample), "identical": identical}


async def default_path_novelty(
    engine: QueryEngine, phase: Phase, tenant: str, weights: Weights
) -> dict[str, Any]:
    """The API's default request (``exclude_seen`` only, no explicit exclusions): the
    share of the top 10 the user had not rated before, for users with history."""
    shares = []
    for row in phase.rows:
        if not row.has_history:
            continue
        _, results = await engine.recommendations(
            tenant, row.user_id, limit=10, item_filter=ItemFilter(tenant=tenant), weights=weights
        )
        ranked = [r.item_id for r in results]
        shares.append(novelty_share(ranked, row.history))
    limit = engine.config.recent_items_limit
    return {
        "users": len(shares),
        "users_beyond_recent_limit": sum(1 for row in phase.rows if len(row.history) > limit),
        "recent_items_limit": limit,
        "novelty@10": float(np.mean(shares)) if shares else None,
    }


__all__ = ["check_http_route", "default_path_novelty", "gather_candidates"]
