"""The events subscriber in FastStream's in-memory TestKafkaBroker, folding into
fakeredis (with Lua): decode, dead-letter, fold, and the reader's view of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis
from faststream.kafka import KafkaBroker, TestKafkaBroker

from schemas.deadletter import DeadLetterRecord
from schemas.topics import DEAD_LETTER, EVENTS
from services.common.kafka import make_broker
from services.common.settings import Settings
from services.common.userstore import DecayRates, UserModelKeys
from services.common.userstore.read import UserModelReader
from services.usermodel.subscriber import events_router

SETTINGS = Settings(kafka_group_prefix="unit", redis_namespace="unit")
SENT_AT = datetime(2024, 5, 1, 12, tzinfo=UTC)
"""When every event below happened: the reader decays popularity to then."""


class Harness:
    def __init__(self, broker: KafkaBroker, redis: FakeAsyncRedis) -> None:
        self.broker = broker
        self.reader = UserModelReader(
            redis, UserModelKeys("unit"), DecayRates.from_settings(SETTINGS), clock=lambda: SENT_AT
        )
        self.dead_letters: list[DeadLetterRecord] = []

    async def send(self, *bodies: Any) -> None:
        await self.broker.publish_batch(*bodies, topic=EVENTS.name)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    redis = FakeAsyncRedis()
    broker = make_broker(SETTINGS)
    broker.include_router(events_router(SETTINGS, redis))
    running = Harness(broker, redis)

    @broker.subscriber(DEAD_LETTER.name)
    async def capture(body: dict[str, Any]) -> None:
        running.dead_letters.append(DeadLetterRecord.model_validate(body))

    async with TestKafkaBroker(broker):
        yield running
    await redis.aclose()


def event(message_id: str, user: str, name: str, item: str, **properties: Any) -> dict[str, Any]:
    return {
        "tenant": "acme", "type": "track", "event": name, "userId": user,
        "messageId": message_id, "timestamp": SENT_AT.isoformat(),
        "properties": {"item_id": item, **properties},
    }  # fmt: skip


async def test_events_are_folded_into_the_user_model(harness: Harness) -> None:
    await harness.send(
        event("m1", "ann", "like", "a", tags=["space", "film"]),
        event("m2", "ann", "view", "b", tags=["space"]),
        event("m3", "bob", "view", "a", tags=["space"]),
    )
    await harness.send(event("m4", "ann", "view", "a"))

    model = await harness.reader.user("acme", "ann")
    assert model.events == 3
    assert model.event_counts == {"like": 1, "view": 2}
    assert {i.item_id: i.strength for i in model.recent} == {"a": 4.0, "b": 1.0}
    assert model.tag_affinity == {"space": pytest.approx(4.0), "film": pytest.approx(3.0)}
    assert await harness.reader.popular("acme", 10) == [("a", 5.0), ("b", 1.0)]
    assert harness.dead_letters == []


async def test_a_redelivered_batch_changes_nothing(harness: Harness) -> None:
    first = [event("m1", "ann", "like", "a"), event("m2", "bob", "like", "a")]
    await harness.send(*first)
    await harness.send(*first)  # the same messageIds again (a producer's retry)

    assert (await harness.reader.user("acme", "ann")).events == 1
    assert await harness.reader.popular("acme", 10) == [("a", 6.0)]


async def test_malformed_events_are_dead_lettered_and_the_rest_folded(harness: Harness) -> None:
    await harness.send(
        b"{not json",
        {"tenant": "acme", "event": "view", "messageId": "no-user", "timestamp": "2024-05-01"},
        {**event("m9", "ann", "view", "a"), "schema_version": 7},
        event("m3", "bob", "purchase", "z"),
    )

    reasons = sorted(letter.reason for letter in harness.dead_letters)
    assert reasons == ["invalid_json", "schema_violation", "unsupported_schema_version"]
    violation = next(d for d in harness.dead_letters if d.reason == "schema_violation")
    assert "userId or anonymousId" in violation.error
    assert violation.consumer == "unit-usermodel"
    assert (await harness.reader.user("acme", "bob")).events == 1
    assert await harness.reader.popular("acme", 10) == [("z", 5.0)]


async def test_traits_holding_an_integer_beyond_64_bits_are_folded(harness: Harness) -> None:
    """Valid JSON that ingest accepts; the fold's encoder used to refuse it, and the
    event went to the dead-letter topic."""
    identify = {
        "tenant": "acme", "type": "identify", "userId": "ann", "messageId": "m1",
        "timestamp": SENT_AT.isoformat(),
        "traits": {"plan": "pro", "seats": 2**70, "ids": [10**400, 7], "org": {"id": -(2**64)}},
    }  # fmt: skip
    await harness.send(identify, event("m2", "ann", "like", "a"))

    assert harness.dead_letters == []
    model = await harness.reader.user("acme", "ann")
    assert model.events == 2
    assert model.traits == {  # Lua's numbers are doubles
        "plan": "pro",
        "seats": pytest.approx(2.0**70, rel=1e-12),
        "ids": [str(10**400), 7],
        "org": {"id": pytest.approx(-(2.0**64), rel=1e-12)},
    }
