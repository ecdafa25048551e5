"""From accepted HTTP bodies to topic messages: the tenant rule, ``receivedAt``, keys."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from schemas.api import BehaviourEventIn, ContentUpsertIn
from schemas.content import ContentTombstone
from schemas.events import BehaviourEvent
from schemas.topics import CONTENT, EVENTS, content_key, events_key
from services.common.records import describe_validation_error

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish, and where it came from in the request."""

    topic: str
    key: bytes
    value: bytes  # the message as JSON
    id: str
    field: str

    @classmethod
    def of(cls, topic: str, key: bytes, message: BaseModel, id: str, field: str) -> Outgoing:
        return cls(topic, key, message.__pydantic_serializer__.to_json(message), id, field)


class InvalidMessage(Exception):
    """A body that validated as a request but not as the topic message it becomes."""

    def __init__(self, where: str, error: ValidationError) -> None:
        super().__init__(describe_validation_error(error))
        self.where, self.error = where, error


def _converted(where: str, convert: Callable[[], T]) -> T:
    try:
        return convert()
    except ValidationError as error:
        raise InvalidMessage(where, error) from None


class ContextTooLarge(Exception):
    """A Segment context larger than allowed: it is copied into every event it covers."""

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(f"{field} is {size} bytes as JSON, more than the {limit} allowed")
        self.field, self.size, self.limit = field, size, limit


def _check_context(context: dict[str, Any] | None, field: str, limit: int) -> None:
    if context:
        # As the message will be written (orjson refuses integers beyond 64 bits).
        size = len(to_json(context, inf_nan_mode="null"))
        if size > limit:
            raise ContextTooLarge(field, size, limit)


class TimestampAhead(Exception):
    """An event whose timestamp is further ahead of its arrival than the clock skew
    allowed: it would move its tenant's decayed scores into the future."""

    def __init__(self, field: str, limit: datetime) -> None:
        super().__init__(f"{field} is after {limit.isoformat()}")
        self.field, self.limit = field, limit


class TenantMismatch(Exception):
    """A body names another tenant than the API key's."""

    def __init__(self, field: str, claimed: str, tenant: str) -> None:
        super().__init__(f"{field} is {claimed!r} but the API key belongs to tenant {tenant!r}")
        self.field, self.claimed, self.tenant = field, claimed, tenant


def message_tenant(claimed: str | None, tenant: str, *, from_key: bool, field: str) -> str:
    """The tenant of one message. With an API key (``from_key``) the body may only repeat
    the key's tenant; without keys a body tenant wins over the header or default."""
    if claimed is None or claimed == tenant:
        return tenant
    if from_key:
        raise TenantMismatch(field, claimed, tenant)
    return claimed


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def event_messages(
    events: Sequence[BehaviourEventIn],
    tenant: str,
    *,
    from_key: bool,
    received_at: datetime,
    field: str | None,
    sent_at: datetime | None = None,
    context: dict[str, Any] | None = None,
    max_skew: timedelta = timedelta(days=1),
    max_context_bytes: int = 8_192,
) -> list[Outgoing]:
    """Events for the events topic keyed by tenant/user. ``field`` names the list in the
    body (None: the body is one event); ``sent_at`` and ``context`` are a Segment batch's,
    applied to events that lack their own. A timestamp more than ``max_skew`` after
    ``received_at`` is refused, and so is a context (the batch's or an event's) larger
    than ``max_context_bytes``."""
    latest = received_at + max_skew
    _check_context(context, "context", max_context_bytes)
    out = []
    for index, event in enumerate(events):
        where = f"{field}.{index}" if field else ""
        _check_context(event.context, _at(where, "context"), max_context_bytes)
        owner = message_tenant(event.tenant, tenant, from_key=from_key, field=_at(where, "tenant"))
        if (sent_at is not None and event.sent_at is None) or context:
            event = event.model_copy(
                update={
                    "sent_at": event.sent_at or sent_at,
                    "context": {**(context or {}), **event.context},
                }
            )
        message = _stamped(event, owner, received_at)
        if message.timestamp > latest:
            raise TimestampAhead(_at(where, "timestamp"), latest)
        key = events_key(owner, message.user_key)
        out.append(Outgoing.of(EVENTS.name, key, message, message.message_id, where))
    return out


def _stamped(event: BehaviourEventIn, tenant: str, received_at: datetime) -> BehaviourEvent:
    """``event`` made its topic message in place, as :meth:`BehaviourEventIn.to_event`
    makes it in a copy: the request's events are parsed for this call alone, and the
    copy was a third of the cost per event. Serializes as a BehaviourEvent."""
    event.tenant = tenant
    event.timestamp = event.timestamp or received_at
    event.received_at = received_at
    return event


def content_messages(
    items: Sequence[ContentUpsertIn], tenant: str, *, from_key: bool, received_at: datetime
) -> list[Outgoing]:
    """Upserts for the content topic keyed by tenant/item."""
    out = []
    for index, item in enumerate(items):
        where = f"items.{index}"
        owner = message_tenant(item.tenant, tenant, from_key=from_key, field=_at(where, "tenant"))
        message = _converted(where, partial(item.to_message, owner, received_at))
        key = content_key(owner, message.item_id)
        out.append(Outgoing.of(CONTENT.name, key, message, message.item_id, where))
    return out


def tombstone_message(
    item_id: str, tenant: str, *, received_at: datetime, version: int | None = None
) -> Outgoing:
    """A tombstone for the content topic; without a ``version`` it deletes whatever
    version is stored (see :class:`ContentTombstone`)."""
    message = ContentTombstone(
        tenant=tenant, item_id=item_id, op="delete", updated_at=received_at, version=version
    )
    key = content_key(tenant, message.item_id)
    return Outgoing.of(CONTENT.name, key, message, message.item_id, "item_id")


__all__ = [
    "InvalidMessage",
    "Outgoing",
    "TenantMismatch",
    "TimestampAhead",
    "content_messages",
    "event_messages",
    "message_tenant",
    "tombstone_message",
]
