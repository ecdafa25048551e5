"""The demo personas, tried as a new user would: what a persona disliked stays out of
its top 10, and among the items it has not seen, those of the themes it loves rank
above the rest. On the demo fixture: all four services, the real broker, Redis and
model, the demo data loaded through Kafka."""

from __future__ import annotations

from statistics import mean
from typing import Any

import httpx
import pytest

from services.app.datasets import DEMO_USERS
from services.app.datasets.demo import THEMES, DemoUser, item_themes
from tests.e2e.conftest import Demo

pytestmark = pytest.mark.integration


def disliked_themes(user: DemoUser, demo: Demo) -> set[str]:
    """The themes of the persona's dislikes that its events show: a dislike or a rating
    below 2.5 of an item of that theme (a persona that never met the theme it dislikes
    cannot have told Attune)."""
    tags = {item.item_id: item.tags for item in demo.items}
    shown: set[str] = set()
    for event in demo.events:
        rating = event.properties.rating
        negative = event.event == "dislike" or (rating is not None and rating < 2.5)
        if event.user_id == user.user_id and negative and event.properties.item_id:
            shown |= set(item_themes(tags[event.properties.item_id])) & set(user.dislikes)
    return shown


def table(ranked: list[dict[str, Any]]) -> str:
    """The ranking with each item's themes and the contributions behind it."""
    return "\n".join(
        f"{n:3d} {item['item_id']:14s} {','.join(item_themes(item['tags'])):28s} "
        + "; ".join(f"{r['signal']}={r['contribution']}" for r in item["reasons"])
        for n, item in enumerate(ranked, start=1)
    )


LOVED_IN_TOP_5 = 2.0
"""The least mean number of items of a persona's loved themes in its top 5 (out of 5)."""


async def test_dislikes_stay_out_of_the_top_10_and_loved_themes_rank_first(demo: Demo) -> None:
    covered = set()
    loved_in_top_5: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=demo.url, timeout=30) as client:
        for user in DEMO_USERS:
            # Every demo item carries a theme; other tests on the fixture add items of their own.
            themed = [("tags", theme) for theme in THEMES]
            response = await client.get(
                f"/v1/users/{user.user_id}/recommendations", params=[("limit", 100), *themed]
            )
            assert response.status_code == 200, response.text
            ranked = [i for i in response.json()["items"] if i["item_id"] in demo.item_ids]
            seen = {e.properties.item_id for e in demo.events if e.user_id == user.user_id}
            assert {i["item_id"] for i in ranked} == demo.item_ids - seen, table(ranked)
            themes = [set(item_themes(item["tags"])) for item in ranked]
            shown = disliked_themes(user, demo)
            disliked = [n for n, t in enumerate(themes, start=1) if t & shown]
            loved = [n for n, t in enumerate(themes, start=1) if t & set(user.loves)]
            loved = [n for n in loved if n not in disliked]
            others = [n for n in range(1, len(ranked) + 1) if n not in loved]
            context = f"{user.user_id} (disliked shown: {sorted(shown)}):\n{table(ranked)}"
            if shown:
                covered.add(user.user_id)
                assert min(disliked) > 10, context
                assert not loved or min(disliked) > max(loved), context
            if loved:
                assert mean(loved) < mean(others), context
            if user.loves:
                loved_in_top_5[user.user_id] = sum(1 for n in loved if n <= 5)
            for item in ranked:  # every result says what is behind it
                assert item["reasons"], item
                assert all(r["detail"] for r in item["reasons"]), item
    assert {"bob", "mallory"} <= covered, covered
    assert mean(loved_in_top_5.values()) >= LOVED_IN_TOP_5, loved_in_top_5
