"""The shared batch skeleton without a broker: dead letters, outages, poison records."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel, TypeAdapter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from services.common.consumer import BatchConsumer
from services.common.offsets import Watermark
from services.common.records import Envelope
from services.common.redis import is_redis_outage
from services.common.settings import Settings

TOPIC = "attune.events"


@pytest.fixture(autouse=True)
def _no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BatchConsumer, "PAUSES_BEFORE_ISOLATING", ())


class Note(BaseModel):
    text: str


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    value: bytes
    topic: str = TOPIC
    key: bytes | None = None
    timestamp: int = 0
    headers: Sequence[tuple[str, bytes]] = ()


def records(*texts: str, partition: int = 0) -> list[Record]:
    return [
        Record(
            partition, offset, b"{nope" if text == "!json" else json.dumps({"text": text}).encode()
        )
        for offset, text in enumerate(texts)
    ]


@dataclass
class Store:
    marks: dict[int, Watermark] = field(default_factory=dict)

    async def load_watermarks(self) -> dict[int, Watermark]:
        return dict(self.marks)

    async def save_watermarks(self, marks: Mapping[int, Watermark]) -> None:
        self.marks.update(marks)


@dataclass
class Broker:
    published: list[dict[str, Any]] = field(default_factory=list)

    async def publish(self, body: dict[str, Any], topic: str, key: bytes | None = None) -> None:
        self.published.append(body)


@dataclass
class Applied:
    """An ``apply`` that fails as told, and keeps what it applied; returns a count."""

    outages: list[BaseException] = field(default_factory=list)
    poison: set[str] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)
    calls: int = 0

    async def __call__(self, envelopes: list[Envelope[Note]], store: Store) -> int:
        self.calls += 1
        if self.outages:
            raise self.outages.pop(0)
        if any(e.message.text in self.poison for e in envelopes):
            raise ResponseError("ERR user_script:12: attempt to index a nil value")
        self.texts.extend(e.message.text for e in envelopes)
        return len(envelopes)


def consumer(store: Store, apply: Applied) -> BatchConsumer[Note, Store, int]:
    async def watermarks() -> Store:
        return store

    return BatchConsumer(
        topic=TOPIC,
        group_id="unit",
        settings=Settings(),
        adapter=TypeAdapter(Note),
        watermarks=watermarks,
        apply=apply,
        is_outage=is_redis_outage,
        dependency="redis",
    )


def dependency_up() -> float | None:
    return REGISTRY.get_sample_value("attune_dependency_up", {"dependency": "redis"})


@pytest.mark.parametrize(
    "outage",
    [
        RedisConnectionError("refused"),
        ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        ResponseError("READONLY You can't write against a read only replica."),
        ResponseError("ERR Error running script: @user_script:7: OOM command not allowed"),
    ],
    ids=["connection", "oom", "readonly", "oom-in-a-script"],
)
async def test_an_outage_is_waited_out_and_dead_letters_go_once(outage: Exception) -> None:
    store, apply, broker = Store(), Applied(outages=[outage, outage]), Broker()

    outcome = await consumer(store, apply).handle(records("a", "!json", "b"), broker)  # type: ignore[arg-type]

    assert apply.calls == 3
    assert apply.texts == ["a", "b"]
    assert [d["reason"] for d in broker.published] == ["invalid_json"]
    assert store.marks == {0: Watermark(0, 2)}
    assert outcome.result == 2
    assert dependency_up() == 1


async def test_a_record_that_cannot_be_applied_is_dead_lettered_once_and_the_rest_go_on() -> None:
    store, apply, broker = Store(), Applied(poison={"c"}), Broker()
    batch = records("a", "b", "c", "d", "e", "!json")

    outcome = await consumer(store, apply).handle(batch, broker)  # type: ignore[arg-type]

    assert apply.texts == ["a", "b", "d", "e"]  # in order
    letters = {d["offset"]: (d["reason"], d["error"]) for d in broker.published}
    assert letters.keys() == {2, 5}
    assert letters[2][0] == "processing_failed"
    assert "attempt to index a nil value" in letters[2][1]
    assert letters[5][0] == "invalid_json"
    assert store.marks == {0: Watermark(0, 5)}
    assert [e.offset for e in outcome.applied] == [0, 1, 3, 4]
    assert outcome.result == 4


async def test_an_outage_while_isolating_a_poison_record_retries_without_a_second_letter() -> None:
    store, broker = Store(), Broker()
    apply = Applied(poison={"b"})
    batch = records("a", "b", "!json")
    handled = consumer(store, apply)
    original = apply.__call__
    outage_once = [RedisConnectionError("gone")]

    async def flaky(envelopes: list[Envelope[Note]], s: Store) -> int:
        if len(envelopes) == 1 and outage_once:
            raise outage_once.pop()
        return await original(envelopes, s)

    handled.apply = flaky
    await handled.handle(batch, broker)  # type: ignore[arg-type]

    assert sorted((d["offset"], d["reason"]) for d in broker.published) == [
        (1, "processing_failed"),
        (2, "invalid_json"),
    ]
    assert apply.texts == ["a"]
    assert store.marks == {0: Watermark(0, 2)}


async def test_a_failure_of_an_empty_batch_still_fails_the_batch() -> None:
    store, broker = Store(), Broker()

    async def broken(envelopes: list[Envelope[Note]], s: Store) -> int:
        raise RuntimeError("the store rejects everything")

    handled = consumer(store, Applied())
    handled.apply = broken
    with pytest.raises(RuntimeError):
        await handled.handle(records("!json"), broker)  # type: ignore[arg-type]
    assert store.marks == {}


async def test_when_every_record_fails_alone_the_batch_fails_and_nothing_is_dead_lettered() -> None:
    store, apply, broker = Store(), Applied(poison={"a", "b"}), Broker()
    with pytest.raises(ResponseError):
        await consumer(store, apply).handle(records("a", "b"), broker)  # type: ignore[arg-type]
    assert broker.published == []
    assert store.marks == {}


async def test_a_fault_that_passes_within_the_pauses_dead_letters_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(BatchConsumer, "PAUSES_BEFORE_ISOLATING", (0.01,))
    store, broker = Store(), Broker()
    apply = Applied()
    failures = [RuntimeError("a hiccup")]
    handled = consumer(store, apply)
    original = apply.__call__

    async def hiccup(envelopes: list[Envelope[Note]], s: Store) -> int:
        if failures:
            raise failures.pop()
        return await original(envelopes, s)

    handled.apply = hiccup
    await handled.handle(records("a", "b"), broker)  # type: ignore[arg-type]
    assert apply.texts == ["a", "b"]
    assert broker.published == []
