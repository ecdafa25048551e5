"""Behaviour events in the Segment / RudderStack shape.

The field names are Segment's (``messageId``, ``userId``, ``anonymousId``,
``event``, ``properties``, ``timestamp``, ``type``) so that analytics SDKs and
webhooks can feed Attune unchanged; Python code reads them in snake_case.
``messageId`` is the idempotency key: a repeated one changes nothing.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from schemas.common import ItemId, TenantId, UserKey, UtcDatetime

EVENT_SCHEMA_VERSION: Literal[1] = 1

EventType = Literal["track", "page", "screen", "identify"]


class EventProperties(BaseModel):
    """What the event is about. Other properties are kept as sent."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    item_id: ItemId | None = Field(
        default=None,
        validation_alias=AliasChoices("item_id", "itemId", "product_id", "productId"),
        description="The content item the event is about (Segment's e-commerce "
        "product_id is accepted too).",
    )
    rating: float | None = Field(
        default=None, ge=0, le=10, description="Explicit rating, e.g. 0.5-5 stars."
    )
    value: float | None = Field(
        default=None, description="A numeric strength or amount (watch seconds, price...)."
    )


class BehaviourEvent(BaseModel):
    """One behaviour event, as it travels on the events topic."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", serialize_by_alias=True)

    schema_version: Literal[1] = Field(
        default=EVENT_SCHEMA_VERSION, description="Version of this message's contract."
    )
    tenant: TenantId
    type: EventType = Field(default="track", description="Segment call type.")
    event: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The action for track calls, e.g. 'view', 'like', 'purchase', 'rating'.",
    )
    name: str | None = Field(
        default=None, max_length=200, description="Page or screen name (page/screen calls)."
    )
    message_id: UserKey = Field(
        alias="messageId", description="Unique per event; the idempotency key."
    )
    user_id: UserKey | None = Field(
        default=None, alias="userId", description="The known user; this or anonymousId."
    )
    anonymous_id: UserKey | None = Field(
        default=None, alias="anonymousId", description="Device or session id when not known."
    )
    timestamp: UtcDatetime = Field(description="When the event happened (ISO 8601).")
    properties: EventProperties = Field(
        default_factory=EventProperties, description="What the event is about."
    )
    traits: dict[str, Any] = Field(
        default_factory=dict, description="User traits (identify calls)."
    )
    context: dict[str, Any] = Field(
        default_factory=dict, description="Segment context (library, device, locale...)."
    )
    sent_at: UtcDatetime | None = Field(
        default=None, alias="sentAt", description="When the client sent it."
    )
    received_at: UtcDatetime | None = Field(
        default=None, alias="receivedAt", description="When Attune's ingest received it."
    )

    @model_validator(mode="after")
    def _check_identity_and_action(self) -> Self:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("either userId or anonymousId is required")
        if self.type == "track" and self.event is None:
            raise ValueError("'event' is required for track calls")
        return self

    @property
    def user_key(self) -> str:
        """The id the user model is keyed by: userId, else anonymousId."""
        key = self.user_id or self.anonymous_id
        assert key is not None  # guaranteed by the validator
        return key


__all__ = ["EVENT_SCHEMA_VERSION", "BehaviourEvent", "EventProperties", "EventType"]
