"""HTTP bodies of the ingest API, and the one error shape every HTTP service answers with.

Over HTTP the tenant comes from the API key (or, without keys, from the
``X-Attune-Tenant`` header or the body), so the ``*In`` models make it optional;
ingest fills it in and stamps ``receivedAt`` before publishing the topic message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import TenantId, UtcDatetime
from schemas.content import ContentUpsert
from schemas.events import BehaviourEvent

MAX_BATCH = 1_000


class ErrorDetail(BaseModel):
    field: str | None = Field(
        default=None, description="Where the problem is, e.g. 'events.0.messageId'."
    )
    message: str = Field(description="What is wrong there.")


class ErrorInfo(BaseModel):
    code: str = Field(description="Machine-readable, e.g. 'validation_error', 'unauthorized'.")
    message: str = Field(description="Human-readable summary.")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx of every Attune HTTP service has this body."""

    error: ErrorInfo


class BehaviourEventIn(BehaviourEvent):
    """A behaviour event as posted over HTTP: tenant and timestamp may be left out."""

    tenant: TenantId | None = None  # type: ignore[assignment]
    timestamp: UtcDatetime | None = Field(  # type: ignore[assignment]
        default=None, description="When it happened; defaults to when Attune received it."
    )

    def to_event(self, tenant: str, received_at: datetime) -> BehaviourEvent:
        """The topic message: ``tenant`` (already validated) filled in, ``timestamp``
        defaulted and ``receivedAt`` stamped. Every field was validated with this model,
        and the three set here are of their declared types, so the copy is not validated
        again (that halved ingest's cost per event); it serializes as a BehaviourEvent."""
        return self.model_copy(
            update={
                "tenant": tenant,
                "timestamp": self.timestamp or received_at,
                "received_at": received_at,
            }
        )


class ContentUpsertIn(ContentUpsert):
    """A content item as posted over HTTP: tenant and updated_at may be left out."""

    tenant: TenantId | None = None  # type: ignore[assignment]
    updated_at: UtcDatetime | None = Field(  # type: ignore[assignment]
        default=None, description="When it last changed; defaults to when Attune received it."
    )

    def to_message(self, tenant: str, received_at: datetime) -> ContentUpsert:
        data = self.model_dump(exclude={"tenant", "updated_at", "version"})
        return ContentUpsert.model_validate(
            {
                **data,
                "tenant": tenant,
                "updated_at": self.updated_at or received_at,
                "version": self.version,
            }
        )


class EventBatchIn(BaseModel):
    events: list[BehaviourEventIn] = Field(min_length=1, max_length=MAX_BATCH)


class ContentBatchIn(BaseModel):
    items: list[ContentUpsertIn] = Field(min_length=1, max_length=MAX_BATCH)


class SegmentBatchIn(BaseModel):
    """Segment's / RudderStack's ``POST /v1/batch`` body."""

    model_config = ConfigDict(extra="allow")

    batch: list[BehaviourEventIn] = Field(min_length=1, max_length=MAX_BATCH)
    sent_at: UtcDatetime | None = Field(default=None, alias="sentAt")
    context: dict[str, Any] = Field(default_factory=dict)


class Accepted(BaseModel):
    """The broker has stored every message of the request (acks=all)."""

    accepted: int = Field(description="Messages published and acknowledged.")
    ids: list[str] = Field(description="messageIds (events) or item_ids (content), in order.")


__all__ = [
    "MAX_BATCH",
    "Accepted",
    "BehaviourEventIn",
    "ContentBatchIn",
    "ContentUpsertIn",
    "ErrorDetail",
    "ErrorInfo",
    "ErrorResponse",
    "EventBatchIn",
    "SegmentBatchIn",
]
