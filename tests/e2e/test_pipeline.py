"""End to end on the real embedded stack: content and events posted over HTTP flow
through Kafka, the embedder (real model, Qdrant Edge) and the user model (Redis),
and the query API reflects them. Waits poll with a deadline; no fixed sleeps."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.app.bootstrap import SERVICES, assemble, serve_http
from services.app.embedded import EmbeddedStack, free_port
from tests.polling import eventually

pytestmark = pytest.mark.integration

ITEMS = [  # item_id, title, description, tags
    ("apollo", "Apollo's Long Shadow",
     "The astronauts who flew to the Moon and came back changed.", ["space", "history"]),
    ("mars", "Red Planet Diaries",
     "A crew spends a year in a habitat on Mars.", ["space", "science-fiction"]),
    ("orbit", "Orbital Mechanics for Everyone",
     "How rockets reach orbit and dock with stations.", ["space", "science"]),
    ("bread", "Sourdough at Home",
     "Baking a crusty loaf with a wild yeast starter.", ["cooking", "baking"]),
    ("pasta", "Fresh Pasta by Hand",
     "Flour, eggs and a rolling pin: tagliatelle from scratch.", ["cooking", "italian"]),
    ("soup", "Winter Soups",
     "Slow-cooked bean and vegetable soups for cold evenings.", ["cooking", "vegetarian"]),
]  # fmt: skip


@pytest.fixture
async def api(stack: EmbeddedStack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """All four services in one process (as `attune dev` runs them), on a real port."""
    settings = stack.settings().model_copy(
        update={
            "kafka_group_prefix": f"e2e-{uuid.uuid4().hex[:8]}",
            "vector_index_path": tmp_path / "vectors",
            "redis_namespace": f"e2e-{uuid.uuid4().hex[:8]}",
        }
    )
    port = free_port()
    async with (
        assemble(settings, SERVICES, name="attune") as assembly,
        serve_http(assembly.app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        yield client


async def test_posted_content_and_events_reach_every_query(api: httpx.AsyncClient) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    headers = {"X-Attune-Tenant": tenant}
    content = {
        "items": [
            {"item_id": i, "title": t, "description": d, "tags": tags,
             "metadata": {"year": 2000 + n}}
            for n, (i, t, d, tags) in enumerate(ITEMS)
        ]
    }  # fmt: skip
    response = await api.post("/v1/content", json=content, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(ITEMS)

    events = [
        ("ann", "like", "apollo"), ("ann", "view", "mars"),
        ("bob", "like", "apollo"), ("bob", "like", "orbit"), ("bob", "purchase", "bread"),
        ("cy", "like", "bread"), ("cy", "like", "pasta"),
    ]  # fmt: skip
    body = {
        "events": [
            {"event": name, "userId": user, "messageId": f"{tenant}-{n}",
             "timestamp": f"2024-05-01T12:{n:02d}:00Z",
             "properties": {"item_id": item, "tags": dict((i, t) for i, _, _, t in ITEMS)[item]}}
            for n, (user, name, item) in enumerate(events)
        ]
    }  # fmt: skip
    response = await api.post("/v1/events", json=body, headers=headers)
    assert response.status_code == 202, response.text

    async def searchable() -> list[dict[str, Any]]:
        found = await api.post(
            "/v1/search", json={"query": "astronauts travelling to the moon", "limit": 3},
            headers=headers,
        )  # fmt: skip
        items: list[dict[str, Any]] = found.json()["items"]
        return items if len(items) == 3 else []

    hits = await eventually(searchable, "search finds the posted content")
    assert hits[0]["item_id"] == "apollo"
    assert hits[0]["reasons"][0]["signal"] == "query"

    async def profile() -> dict[str, Any] | None:
        found = await api.get("/v1/users/ann", headers=headers)
        return found.json() if found.status_code == 200 else None

    ann = await eventually(profile, "ann's profile reflects her events")
    assert ann["events"] == 2
    assert {r["item_id"] for r in ann["recent"]} == {"apollo", "mars"}
    assert ann["tag_affinity"][0]["tag"] == "space"
    assert ann["recent"][0]["title"] == "Red Planet Diaries"

    async def recommended() -> dict[str, Any] | None:
        found = (await api.get("/v1/users/ann/recommendations?limit=3", headers=headers)).json()
        co = [i for i in found["items"] if any(r["signal"] == "cooccurrence" for r in i["reasons"])]
        return found if co else None

    recs = await eventually(recommended, "ann's recommendations use co-occurrence")
    assert recs["strategy"] == "personalized"
    ids = [i["item_id"] for i in recs["items"]]
    assert not {"apollo", "mars"} & set(ids)  # seen items are left out
    assert ids[0] == "orbit"  # liked by bob, who also liked apollo; and about space
    assert all(item["reasons"] for item in recs["items"])

    similar = (await api.get("/v1/items/pasta/similar?limit=2", headers=headers)).json()
    assert {i["item_id"] for i in similar["items"]} <= {"bread", "soup"}
    bread = similar["items"][0]
    assert bread["item_id"] == "bread"  # similar in content, and liked by cy with pasta
    assert {r["signal"] for r in bread["reasons"]} == {"content", "cooccurrence"}
    assert all("'Fresh Pasta by Hand'" in r["detail"] for r in bread["reasons"])

    # The filter keeps cooking items up to 2003. Ann's list without it holds an item each
    # half of the filter must remove: orbit (2002, not cooking) and pasta (cooking, 2004).
    def fails_tags(item: dict[str, Any]) -> bool:
        return "cooking" not in item["tags"]

    def fails_range(item: dict[str, Any]) -> bool:
        return bool(item["metadata"]["year"] > 2003)

    async def unfiltered() -> list[dict[str, Any]]:
        found = (await api.get("/v1/users/ann/recommendations", headers=headers)).json()
        items: list[dict[str, Any]] = found["items"]
        only_tags = any(fails_tags(i) and not fails_range(i) for i in items)
        only_range = any(fails_range(i) and not fails_tags(i) for i in items)
        return items if only_tags and only_range else []

    await eventually(unfiltered, "ann's list holds items each half of the filter removes")
    filtered = await api.get(
        "/v1/users/ann/recommendations", params={"tags": "cooking", "filter": "year<=2003"},
        headers=headers,
    )  # fmt: skip
    kept = filtered.json()["items"]
    assert kept, filtered.text
    assert not [i for i in kept if fails_tags(i) or fails_range(i)], filtered.text
    assert [i["item_id"] for i in kept] == ["bread"]  # the only unseen item that passes

    # The tenant-wide lists are folded after the users' models, and the query service
    # reuses them for up to ATTUNE_QUERY_RANKED_CACHE_S: wait for cy's like to show.
    async def cold_start() -> dict[str, Any] | None:
        found = (await api.get("/v1/users/nobody/recommendations", headers=headers)).json()
        return found if found["items"] and found["items"][0]["item_id"] == "bread" else None

    cold = await eventually(cold_start, "bread (a purchase (5) and a like (3)) leads")
    assert cold["strategy"] == "trending"

    unknown = await api.get("/v1/items/nope/similar", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "item_not_found"


async def test_a_counted_upsert_after_a_delete_without_a_version_brings_the_item_back(
    api: httpx.AsyncClient,
) -> None:
    """A producer that counts its versions deletes without one, then re-creates the item
    with its next count: the delete must not outrank that count."""
    tenant = f"t{uuid.uuid4().hex[:8]}"
    headers = {"X-Attune-Tenant": tenant}

    async def post(version: int) -> httpx.Response:
        item = {"item_id": "heat", "title": f"Heat, cut {version}", "version": version}
        return await api.post("/v1/content", json={"items": [item]}, headers=headers)

    async def present(expected: bool) -> bool:
        found = await api.get("/v1/items/heat/similar", headers=headers)
        assert found.status_code in (200, 404), found.text
        return (found.status_code == 200) == expected

    assert (await post(5)).status_code == 202
    await eventually(lambda: present(True), "the item is embedded")
    deleted = await api.delete("/v1/content/heat", headers=headers)
    assert deleted.status_code == 202, deleted.text
    await eventually(lambda: present(False), "the delete takes the item out")
    assert (await post(6)).status_code == 202
    await eventually(lambda: present(True), "the next counted version brings it back")

    refused = await post(2**53)
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "items.0.version"
