"""The demo data set Attune ships: 60 content items over eight themes and the
behaviour of twelve users with clear tastes.

The items are our own text, kept in ``demo_items.jsonl`` next to this module. The
events are generated from the personas below with a random generator seeded by the
user id, so the same ``now`` always gives the same events (and the same message ids
whatever ``now`` is: loading the demo twice changes nothing downstream).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import Any

from schemas.content import ContentUpsert
from schemas.events import BehaviourEvent

DEMO_TENANT = "demo"
DEMO_UPDATED_AT = datetime(2025, 1, 1, tzinfo=UTC)
"""The ``updated_at`` of every demo item (so their versions never change)."""
DEMO_HISTORY_DAYS = 30
"""The demo events span this many days, the newest one at ``now``."""

THEMES: tuple[str, ...] = (
    "space",
    "cooking",
    "detective",
    "history",
    "jazz",
    "outdoors",
    "machine-learning",
    "gardening",
)
"""The eight themes; every demo item carries at least one of them as a tag."""


@dataclass(frozen=True)
class DemoUser:
    """A demo persona: what the user loves, likes a little and dislikes."""

    user_id: str
    summary: str
    loves: tuple[str, ...]
    likes: tuple[str, ...] = ()
    dislikes: tuple[str, ...] = ()
    favourite_tags: tuple[str, ...] = ()
    sessions: int = 16

    @property
    def example_query(self) -> str:
        """A search phrase that suits the persona (for printing example requests)."""
        return _EXAMPLE_QUERIES.get(self.loves[0], self.loves[0])


_EXAMPLE_QUERIES = {
    "space": "a slow science fiction film about a crew far from Earth",
    "cooking": "quick vegetarian dinners",
    "detective": "a murder mystery with a clever amateur sleuth",
    "history": "how medieval cathedrals were built",
    "jazz": "bebop piano records for beginners",
    "outdoors": "planning a long-distance hike",
    "machine-learning": "how recommendation systems use embeddings",
    "gardening": "growing vegetables without digging",
}

DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser(
        "alice",
        "Space exploration and science fiction; not into cooking.",
        loves=("space",),
        likes=("machine-learning",),
        dislikes=("cooking",),
        favourite_tags=("science-fiction",),
        sessions=20,
    ),
    DemoUser(
        "bob",
        "Home cook who grows his own vegetables; finds crime stories grim.",
        loves=("cooking", "gardening"),
        dislikes=("detective",),
        favourite_tags=("vegetables", "herbs"),
        sessions=18,
    ),
    DemoUser(
        "carol",
        "Detective fiction and history: historical mysteries above all.",
        loves=("detective", "history"),
        favourite_tags=("mystery", "noir"),
    ),
    DemoUser(
        "dave",
        "Jazz fan (bebop, big bands), with a side of music history.",
        loves=("jazz",),
        likes=("history",),
        dislikes=("machine-learning",),
        favourite_tags=("bebop", "piano"),
    ),
    DemoUser(
        "erin",
        "Hiker and gardener: mountains, camping, compost.",
        loves=("outdoors", "gardening"),
        dislikes=("jazz",),
        favourite_tags=("hiking", "camping"),
    ),
    DemoUser(
        "frank",
        "Machine learning engineer who reads about astronomy.",
        loves=("machine-learning",),
        likes=("space",),
        favourite_tags=("embeddings", "astronomy"),
        sessions=20,
    ),
    DemoUser(
        "grace",
        "History buff (ancient and medieval); avoids tech.",
        loves=("history",),
        likes=("detective",),
        dislikes=("machine-learning",),
        favourite_tags=("ancient", "medieval"),
    ),
    DemoUser(
        "heidi",
        "Camp cook: cooking outdoors and on the trail, jazz in the evening.",
        loves=("cooking", "outdoors"),
        likes=("jazz",),
        favourite_tags=("camping", "one-pot"),
    ),
    DemoUser(
        "ivan",
        "Stargazer who hikes to dark skies: outdoors and space.",
        loves=("outdoors", "space"),
        favourite_tags=("astronomy", "stargazing"),
    ),
    DemoUser(
        "judy",
        "Late-night jazz and noir detective stories; hates camping.",
        loves=("jazz", "detective"),
        dislikes=("outdoors",),
        favourite_tags=("noir", "vocal"),
    ),
    DemoUser(
        "mallory",
        "Buys machine learning textbooks and plays jazz records; not interested in space.",
        loves=("machine-learning",),
        likes=("jazz",),
        dislikes=("space",),
        favourite_tags=("deep-learning", "statistics"),
        sessions=24,
    ),
    DemoUser(
        "niaj",
        "New user with a short history: houseplants and gardening.",
        loves=("gardening",),
        favourite_tags=("houseplants",),
        sessions=4,
    ),
)
"""The twelve demo users who have a history."""

DEMO_COLD_START_USER = "olivia"
"""A demo user id with no events at all (cold start: recommendations fall back)."""


@cache
def _item_records() -> tuple[dict[str, Any], ...]:
    text = files(__package__).joinpath("demo_items.jsonl").read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def demo_items(tenant: str = DEMO_TENANT) -> list[ContentUpsert]:
    """The 60 demo content items, validated, for ``tenant``."""
    return [
        ContentUpsert.model_validate({**record, "tenant": tenant, "updated_at": DEMO_UPDATED_AT})
        for record in _item_records()
    ]


def item_themes(tags: list[str] | tuple[str, ...]) -> list[str]:
    """The themes among an item's tags (the first one is its main theme)."""
    return [tag for tag in tags if tag in THEMES]


# (probability, event, ratings) of the follow-ups to a view, by the user's affinity.
_FOLLOW_UPS: dict[str, tuple[tuple[float, str, tuple[float, ...]], ...]] = {
    "love": ((0.5, "like", ()), (0.4, "rating", (4.0, 4.5, 5.0)), (0.25, "purchase", ())),
    "like": ((0.25, "like", ()), (0.3, "rating", (3.0, 3.5, 4.0)), (0.05, "purchase", ())),
    "neutral": ((0.15, "rating", (2.5, 3.0, 3.5)),),
    "dislike": ((0.7, "dislike", ()), (0.3, "rating", (1.0, 1.5, 2.0))),
}
_AFFINITY_WEIGHT = {"love": 6.0, "like": 2.0, "neutral": 0.4, "dislike": 0.6}


def _affinity(user: DemoUser, tags: list[str]) -> str:
    themes = set(item_themes(tags))
    if themes & set(user.loves):
        return "love"
    if themes & set(user.dislikes):
        return "dislike"
    if themes & set(user.likes):
        return "like"
    return "neutral"


def _user_interactions(
    user: DemoUser, items: list[ContentUpsert]
) -> list[tuple[float, str, str, float | None]]:
    """(seconds before the end of the window, event, item_id, rating), oldest first."""
    rng = random.Random(f"attune-demo/{user.user_id}")
    weights = []
    for item in items:
        weight = _AFFINITY_WEIGHT[_affinity(user, item.tags)]
        if set(item.tags) & set(user.favourite_tags):
            weight *= 2.0
        weights.append(weight)
    window = DEMO_HISTORY_DAYS * 86_400
    starts = sorted((rng.uniform(0, window) for _ in range(user.sessions)), reverse=True)
    out: list[tuple[float, str, str, float | None]] = []
    for ago in starts:
        index = rng.choices(range(len(items)), weights=weights)[0]
        weights[index] *= 0.2  # a seen item is less likely to come back
        item = items[index]
        out.append((ago, "view", item.item_id, None))
        later = ago
        for probability, event, ratings in _FOLLOW_UPS[_affinity(user, item.tags)]:
            if rng.random() < probability:
                later = max(later - rng.uniform(30, 1_800), 0.0)
                rating = rng.choice(ratings) if ratings else None
                out.append((later, event, item.item_id, rating))
    out.sort(key=lambda row: -row[0])  # stable: a follow-up never precedes its view
    return out


def demo_events(now: datetime, tenant: str = DEMO_TENANT) -> list[BehaviourEvent]:
    """The demo users' events over the ``DEMO_HISTORY_DAYS`` before ``now`` (the newest
    one is at ``now``), sorted by time. Deterministic for a given ``now``; the message
    ids do not depend on ``now`` at all."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    items = demo_items(tenant)
    tags_by_id = {item.item_id: item.tags for item in items}
    per_user = {user.user_id: _user_interactions(user, items) for user in DEMO_USERS}
    newest = min(ago for rows in per_user.values() for ago, *_ in rows)
    events = []
    for user_id, rows in per_user.items():
        for sequence, (ago, event, item_id, rating) in enumerate(rows, start=1):
            properties: dict[str, Any] = {"item_id": item_id, "tags": tags_by_id[item_id]}
            if rating is not None:
                properties["rating"] = rating
            events.append(
                BehaviourEvent.model_validate(
                    {
                        "tenant": tenant,
                        "type": "track",
                        "event": event,
                        "messageId": f"demo-{user_id}-{sequence:03d}",
                        "userId": user_id,
                        "timestamp": now - timedelta(seconds=round(ago - newest, 3)),
                        "properties": properties,
                        "context": {"library": {"name": "attune-demo", "version": "1"}},
                    }
                )
            )
    events.sort(key=lambda event: (event.timestamp, event.message_id))
    return events


__all__ = [
    "DEMO_COLD_START_USER",
    "DEMO_HISTORY_DAYS",
    "DEMO_TENANT",
    "DEMO_UPDATED_AT",
    "DEMO_USERS",
    "THEMES",
    "DemoUser",
    "demo_events",
    "demo_items",
    "item_themes",
]
