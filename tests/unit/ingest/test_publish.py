"""publish_all without HTTP: every ack awaited, one resend, a deadline, clear failures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, UnknownError
from faststream.exceptions import IncorrectState

from services.ingest.messages import Outgoing
from services.ingest.publish import MessageTooLarge, PublishFailed, publish_all

Outcome = Callable[[asyncio.Future[Any]], None]


def ok(future: asyncio.Future[Any]) -> None:
    future.set_result("metadata")


def fails(error: Exception) -> Outcome:
    return lambda future: future.set_exception(error)


def never(future: asyncio.Future[Any]) -> None:
    pass


class ScriptedBroker:
    """Answers each publish with a future settled by the next scripted outcome for its
    message id (the last one repeats), as a real producer answers with delivery futures."""

    def __init__(self, script: dict[str, list[Outcome]], send_error: Exception | None = None):
        self.script, self.send_error = script, send_error
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []

    async def publish(
        self, value: bytes, topic: str, *, key: bytes, headers: dict[str, str], no_confirm: bool
    ) -> asyncio.Future[Any]:
        assert no_confirm
        assert headers == {"content-type": "application/json"}
        if self.send_error is not None:
            raise self.send_error
        decoded = json.loads(value)
        self.sent.append((topic, key, decoded))
        outcomes = self.script.get(decoded["id"], [ok])
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(outcome, future)
        return future


def messages(*ids: str) -> list[Outgoing]:
    return [
        Outgoing(
            "attune.events", f"t/{i}".encode(), json.dumps({"id": i}).encode(), i, f"events.{n}"
        )
        for n, i in enumerate(ids)
    ]


async def test_returns_once_every_message_is_acknowledged() -> None:
    broker = ScriptedBroker({})
    await publish_all(broker, messages("a", "b", "c"), timeout_s=1)  # type: ignore[arg-type]
    assert [key for _, key, _ in broker.sent] == [b"t/a", b"t/b", b"t/c"]


async def test_a_failed_send_is_sent_once_more() -> None:
    broker = ScriptedBroker({"b": [fails(UnknownError()), ok]})
    await publish_all(broker, messages("a", "b"), timeout_s=1)  # type: ignore[arg-type]
    assert [value["id"] for _, _, value in broker.sent] == ["a", "b", "b"]


async def test_a_send_that_fails_twice_is_publish_failed() -> None:
    broker = ScriptedBroker({"b": [fails(UnknownError())]})
    with pytest.raises(PublishFailed, match="refused 1 message"):
        await publish_all(broker, messages("a", "b"), timeout_s=1)  # type: ignore[arg-type]


async def test_no_ack_by_the_deadline_is_publish_failed() -> None:
    broker = ScriptedBroker({"b": [never]})
    started = time.monotonic()
    with pytest.raises(PublishFailed, match="not acknowledged in time"):
        await publish_all(broker, messages("a", "b"), timeout_s=0.2)  # type: ignore[arg-type]
    assert 0.2 <= time.monotonic() - started < 1


@pytest.mark.parametrize(
    "error", [IncorrectState("not connected"), KafkaConnectionError("down")], ids=repr
)
async def test_a_producer_that_cannot_send_is_publish_failed(error: Exception) -> None:
    broker = ScriptedBroker({}, send_error=error)
    with pytest.raises(PublishFailed):
        await publish_all(broker, messages("a"), timeout_s=1)  # type: ignore[arg-type]


async def test_a_message_too_large_names_where_it_came_from() -> None:
    broker = ScriptedBroker({}, send_error=MessageSizeTooLargeError("over 1048576"))
    with pytest.raises(MessageTooLarge) as raised:
        await publish_all(broker, messages("a"), timeout_s=1)  # type: ignore[arg-type]
    assert raised.value.message.field == "events.0"


async def test_a_message_the_broker_finds_too_large_is_not_resent() -> None:
    broker = ScriptedBroker({"a": [fails(MessageSizeTooLargeError())]})
    with pytest.raises(MessageTooLarge):
        await publish_all(broker, messages("a"), timeout_s=1)  # type: ignore[arg-type]
    assert len(broker.sent) == 1
