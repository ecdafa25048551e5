"""The shipped demo data set: valid against the contracts, deterministic, coherent."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from schemas import BehaviourEvent, ContentUpsert
from services.app.datasets import (
    DEMO_COLD_START_USER,
    DEMO_HISTORY_DAYS,
    DEMO_USERS,
    THEMES,
    DemoUser,
    demo_events,
    demo_items,
    item_themes,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EVENT_NAMES = {"view", "like", "purchase", "rating", "dislike"}
# A crude stand-in for the user model: how much each event says about a taste.
STRENGTH = {"view": 1.0, "like": 3.0, "purchase": 5.0, "dislike": -3.0}


def _theme_scores(events: list[BehaviourEvent], user_id: str) -> Counter[str]:
    tags = {item.item_id: item.tags for item in demo_items()}
    scores: Counter[str] = Counter()
    for event in events:
        if event.user_id != user_id:
            continue
        assert event.event is not None
        if event.event == "rating":
            assert event.properties.rating is not None
            strength = event.properties.rating - 3.0
        else:
            strength = STRENGTH[event.event]
        for theme in item_themes(tags[event.properties.item_id or ""]):
            scores[theme] += strength
    return scores


def test_demo_items_are_valid_unique_and_cover_every_theme() -> None:
    items = demo_items()

    assert 55 <= len(items) <= 65
    assert len({item.item_id for item in items}) == len(items)
    for item in items:
        assert item.tenant == "demo"
        assert item.title
        assert item.description
        assert item_themes(item.tags), f"{item.item_id} has no theme tag"
        assert item.metadata["kind"] in {"film", "book", "article"}
        assert isinstance(item.metadata["year"], int)
        assert ContentUpsert.model_validate_json(item.model_dump_json()) == item
    per_theme = Counter(item_themes(item.tags)[0] for item in items)
    assert set(per_theme) == set(THEMES)
    assert min(per_theme.values()) >= 6


def test_demo_items_take_the_tenant_and_keep_their_versions() -> None:
    items = demo_items("acme")

    assert {item.tenant for item in items} == {"acme"}
    assert [item.version for item in items] == [item.version for item in demo_items()]


def test_demo_events_are_deterministic_and_end_at_now() -> None:
    events = demo_events(NOW)

    assert events == demo_events(NOW)
    assert 200 <= len(events) <= 600
    assert [event.timestamp for event in events] == sorted(event.timestamp for event in events)
    assert events[-1].timestamp == NOW
    assert events[0].timestamp >= NOW - timedelta(days=DEMO_HISTORY_DAYS)
    assert len({event.message_id for event in events}) == len(events)

    later = demo_events(NOW + timedelta(days=3))
    assert [e.message_id for e in later] == [e.message_id for e in events]
    assert [e.timestamp - timedelta(days=3) for e in later] == [e.timestamp for e in events]


def test_naive_now_is_read_as_utc() -> None:
    assert demo_events(NOW.replace(tzinfo=None)) == demo_events(NOW)


def test_demo_events_have_the_segment_shape_and_refer_to_existing_items() -> None:
    items = {item.item_id: item for item in demo_items()}

    for event in demo_events(NOW):
        assert event.tenant == "demo"
        assert event.type == "track"
        assert event.event in EVENT_NAMES
        assert event.user_id is not None
        assert event.properties.item_id in items
        assert event.properties.model_extra == {"tags": items[event.properties.item_id].tags}
        if event.event == "rating":
            assert event.properties.rating is not None
            assert 0.5 <= event.properties.rating <= 5.0
        else:
            assert event.properties.rating is None
        wire = event.model_dump(mode="json")
        assert {"messageId", "userId", "timestamp", "properties"} <= wire.keys()
        assert BehaviourEvent.model_validate_json(event.model_dump_json()) == event


def test_every_persona_has_a_history_except_the_cold_start_user() -> None:
    events = demo_events(NOW)
    counts = Counter(event.user_id for event in events)

    assert set(counts) == {user.user_id for user in DEMO_USERS}
    assert len(DEMO_USERS) == 12
    assert DEMO_COLD_START_USER not in counts
    assert all(count >= 5 for count in counts.values())
    assert set(Counter(event.event for event in events)) == EVENT_NAMES


@pytest.mark.parametrize("user", DEMO_USERS, ids=lambda user: user.user_id)
def test_each_persona_shows_its_tastes(user: DemoUser) -> None:
    scores = _theme_scores(demo_events(NOW), user.user_id)
    top = [theme for theme, _ in scores.most_common(len(user.loves))]

    assert set(top) == set(user.loves), scores
    for theme in user.dislikes:
        assert scores[theme] < min(scores[loved] for loved in user.loves)
    assert user.summary
    assert user.example_query


def _declared(user: DemoUser) -> list[float]:
    def weight(theme: str) -> float:
        if theme in user.loves:
            return 1.0
        if theme in user.likes:
            return 0.3
        return -0.5 if theme in user.dislikes else 0.0

    return [weight(theme) for theme in THEMES]


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms


def test_personas_are_distinguishable() -> None:
    """Each user's behaviour is closer to their own persona than to anyone else's."""
    events = demo_events(NOW)
    for user in DEMO_USERS:
        scores = _theme_scores(events, user.user_id)
        observed = [scores[theme] for theme in THEMES]
        nearest = max(DEMO_USERS, key=lambda other: _cosine(observed, _declared(other)))
        assert nearest.user_id == user.user_id
