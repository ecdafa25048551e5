"""Tenants on one stack never see each other: the demo tenant and a second tenant, both
with content and events, sharing an item id and a user id on purpose. Every query
of one tenant (search, recommendations, similar items, trending, user profiles) names
only its own items and users, and the other's data cannot be read through it."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Demo
from tests.polling import eventually

pytestmark = pytest.mark.integration

SHARED_ITEM = "space-01"  # a demo item id, another item in the second tenant
SHARED_USER = "alice"  # a demo user, another user in the second tenant
OWN_ITEMS = [  # item_id, title, tags
    (SHARED_ITEM, "Kitchen Garden Almanac: Tomatoes", ["gardening", "b-only"]),
    ("b-sourdough", "Sourdough in a Cold Kitchen", ["cooking", "b-only"]),
    ("b-risotto", "Risotto Without Stirring", ["cooking", "b-only"]),
    ("b-quince", "Quince Paste and Other Preserves", ["cooking", "b-only"]),
    ("b-compost", "Hot Composting in Small Yards", ["gardening", "b-only"]),
]
OWN_EVENTS = [  # user, event, item
    (SHARED_USER, "like", "b-sourdough"), (SHARED_USER, "like", "b-risotto"),
    ("b-ann", "like", "b-sourdough"), ("b-ann", "purchase", "b-quince"),
    ("b-ben", "like", "b-risotto"), ("b-ben", "view", "b-compost"),
]  # fmt: skip
# No event of this tenant touches the shared item: a trending list or co-occurrence
# shared across tenants would bring it in from the demo's events.


def named(body: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Every item id and every title a response names (results, recent items)."""
    rows = [*body.get("items", []), *body.get("recent", [])]
    return {row["item_id"] for row in rows}, {row["title"] for row in rows if row.get("title")}


async def test_two_tenants_never_see_each_others_items_or_users(demo: Demo) -> None:
    other = f"b{uuid.uuid4().hex[:8]}"
    own_ids = {item_id for item_id, _, _ in OWN_ITEMS}
    own_titles = {title for _, title, _ in OWN_ITEMS}
    demo_titles = {item.title for item in demo.items if item.title}
    demo_only_user = next(u for u in sorted(demo.user_ids) if u != SHARED_USER)
    demo_only_item = next(i for i in sorted(demo.item_ids) if i != SHARED_ITEM)
    demo_events = Counter(event.user_id for event in demo.events)
    own_events = Counter(user for user, _, _ in OWN_EVENTS)

    async with httpx.AsyncClient(base_url=demo.url, timeout=30) as api:
        b_headers = {"X-Attune-Tenant": other}
        a_headers = {"X-Attune-Tenant": demo.tenant}
        content = {"items": [
            {"item_id": i, "title": t, "description": f"{t}. A {tags[0]} title.", "tags": tags}
            for i, t, tags in OWN_ITEMS
        ]}  # fmt: skip
        response = await api.post("/v1/content", json=content, headers=b_headers)
        assert response.status_code == 202, response.text
        events = {"events": [
            {"event": name, "userId": user, "messageId": f"{other}-{n}",
             "properties": {"item_id": item}}
            for n, (user, name, item) in enumerate(OWN_EVENTS)
        ]}  # fmt: skip
        response = await api.post("/v1/events", json=events, headers=b_headers)
        assert response.status_code == 202, response.text

        async def loaded() -> bool:
            found = await api.post(
                "/v1/search", json={"query": "kitchen", "limit": 100}, headers=b_headers
            )
            if len(found.json()["items"]) < len(OWN_ITEMS):
                return False
            for user, count in own_events.items():
                profile = await api.get(f"/v1/users/{user}", headers=b_headers)
                if profile.status_code != 200 or profile.json()["events"] < count:
                    return False
            return True

        await eventually(loaded, "the second tenant's content and events are applied")

        async def read(tenant_headers: dict[str, str], method: str, path: str,
                       **kwargs: Any) -> dict[str, Any]:  # fmt: skip
            response = await api.request(method, path, headers=tenant_headers, **kwargs)
            assert response.status_code == 200, f"{path}: {response.text}"
            body: dict[str, Any] = response.json()
            assert body["tenant"] == tenant_headers["X-Attune-Tenant"], path
            return body

        # The second tenant sees its own items and users, and nothing of the demo's.
        b_users = sorted(own_events)
        b_reads = [
            ("POST", "/v1/search", {"json": {"query": "astronauts in orbit", "limit": 100}}),
            ("POST", "/v1/search", {"json": {"query": "bread", "user_id": "b-ann"}}),
            ("GET", "/v1/trending?limit=100", {}),
            *[("GET", f"/v1/users/{u}/recommendations?limit=100", {}) for u in b_users],
            *[("GET", f"/v1/users/{u}", {}) for u in b_users],
            *[("GET", f"/v1/items/{i}/similar?limit=100", {}) for i in sorted(own_ids)],
            ("GET", f"/v1/users/{demo_only_user}/recommendations?limit=100", {}),
        ]
        for method, path, kwargs in b_reads:
            body = await read(b_headers, method, path, **kwargs)
            ids, titles = named(body)
            assert ids, f"{path}: the second tenant's answer is empty"
            assert ids <= own_ids, f"{path}: {sorted(ids - own_ids)} are not the tenant's"
            assert titles <= own_titles, f"{path}: {sorted(titles - own_titles)}"
            text = json.dumps(body)
            assert not any(title in text for title in demo_titles), path
            assert body.get("user_id") in (None, *b_users, demo_only_user), path
        alice = await read(b_headers, "GET", f"/v1/users/{SHARED_USER}")
        assert alice["events"] == own_events[SHARED_USER]
        trending, _ = named(await read(b_headers, "GET", "/v1/trending?limit=100"))
        assert trending == {item for _, _, item in OWN_EVENTS}
        cold = await read(b_headers, "GET", f"/v1/users/{demo_only_user}/recommendations")
        assert cold["strategy"] != "personalized"  # the demo user has no history here

        # The demo's data cannot be read through the second tenant.
        for path, code in ((f"/v1/users/{demo_only_user}", "user_not_found"),
                           (f"/v1/items/{demo_only_item}/similar", "item_not_found")):  # fmt: skip
            response = await api.get(path, headers=b_headers)
            assert response.status_code == 404, f"{path}: {response.text}"
            assert response.json()["error"]["code"] == code

        # The demo tenant sees its own, and nothing of the second tenant's.
        a_reads = [
            ("POST", "/v1/search", {"json": {"query": "sourdough and risotto", "limit": 100}}),
            ("GET", "/v1/trending?limit=100", {}),
            ("GET", f"/v1/users/{SHARED_USER}/recommendations?limit=100", {}),
            ("GET", f"/v1/users/{SHARED_USER}", {}),
            ("GET", f"/v1/items/{SHARED_ITEM}/similar?limit=100", {}),
            ("GET", f"/v1/users/{demo_only_user}/recommendations?limit=100", {}),
        ]
        b_only_ids = own_ids - demo.item_ids
        for method, path, kwargs in a_reads:
            body = await read(a_headers, method, path, **kwargs)
            ids, _ = named(body)
            assert ids, f"{path}: the demo tenant's answer is empty"
            assert not ids & b_only_ids, f"{path}: {sorted(ids & b_only_ids)} leaked"
            text = json.dumps(body)
            assert not any(title in text for title in own_titles), f"{path}: a title of {other}"
            assert "b-only" not in text, path
        alice = await read(a_headers, "GET", f"/v1/users/{SHARED_USER}")
        assert alice["events"] == demo_events[SHARED_USER]
        assert {r["item_id"] for r in alice["recent"]} <= demo.item_ids
        for user in b_users:
            if user not in demo.user_ids:
                response = await api.get(f"/v1/users/{user}", headers=a_headers)
                assert response.status_code == 404, f"{user}: {response.text}"
