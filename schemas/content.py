"""Content items: what the embedder turns into vectors.

An upsert and a tombstone travel on the same topic under the same key, so the
newest write for an item wins whatever the order of arrival: a message carries a
``version`` and the embedder applies a write only when it is at least as new as what
the index holds. A tombstone without a version deletes whatever is stored.

Versions are integers from 0 to 2^53 - 1 (:data:`MAX_VERSION`): the vector index
compares them as 64-bit floats, which are exact only below 2^53 (above, 2^53 + 1 and
2^53 compare equal and an older write could replace a newer one).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
)

from schemas.common import ItemId, MetadataKey, TenantId, UtcDatetime

CONTENT_SCHEMA_VERSION: Literal[1] = 1

MetadataValue = str | int | float | bool | list[str]
TagName = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


MAX_VERSION = 2**53 - 1


def version_from_timestamp(updated_at: UtcDatetime) -> int:
    """The default version: ``updated_at`` in microseconds since the epoch (below
    :data:`MAX_VERSION` until the year 2255)."""
    return int(updated_at.timestamp() * 1_000_000)


class _ContentBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = Field(
        default=CONTENT_SCHEMA_VERSION, description="Version of this message's contract."
    )
    tenant: TenantId
    item_id: ItemId
    updated_at: UtcDatetime = Field(
        description="When the producer last changed (or deleted) the item. ISO 8601; "
        "naive values are read as UTC."
    )


_VERSION_RANGE = "An integer from 0 to 2^53 - 1 (9007199254740991); larger ones are refused."


class ContentUpsert(_ContentBase):
    """Create or replace a content item."""

    op: Literal["upsert"] = Field(default="upsert", description="Upsert or delete.")
    version: int | None = Field(
        default=None,
        ge=0,
        le=MAX_VERSION,
        validate_default=True,
        description="Increasing per item; the newest version wins (on equal versions, the "
        "later message). Defaults to updated_at in microseconds since the epoch. " + _VERSION_RANGE,
    )

    @field_validator("version", mode="after")
    @classmethod
    def _default_version(cls, version: int | None, info: ValidationInfo) -> int | None:
        if version is None and info.data.get("updated_at") is not None:
            return version_from_timestamp(info.data["updated_at"])
        return version

    @property
    def effective_version(self) -> int:
        assert self.version is not None  # set by the validator
        return self.version

    title: str = Field(min_length=1, max_length=1_000, description="Title; always embedded.")
    description: str | None = Field(
        default=None, max_length=20_000, description="Short description; embedded when present."
    )
    body: str | None = Field(
        default=None, max_length=200_000, description="Longer text; embedded when present."
    )
    tags: list[TagName] = Field(
        default_factory=list,
        max_length=256,
        description="Tags or categories; used for filters and for the user's tag affinities.",
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=64,
        description="Filterable attributes (strings, numbers, booleans, lists of strings).",
    )

    def text_to_embed(self) -> str:
        """The text the embedder encodes: title, then description, then body."""
        return "\n".join(part for part in (self.title, self.description, self.body) if part)


class ContentTombstone(_ContentBase):
    """Delete a content item. A tombstone older than the stored version changes nothing;
    one without a version deletes whatever version is stored."""

    op: Literal["delete"] = Field(description="Upsert or delete.")
    version: int | None = Field(
        default=None,
        ge=0,
        le=MAX_VERSION,
        description="Deletes the item unless a newer version is stored. Without one, deletes "
        "whatever version is stored: the tombstone takes the highest version seen for the "
        "item, so an upsert that follows it at that version or higher brings the item back "
        "(no clock reading blocks a producer that counts its versions). " + _VERSION_RANGE,
    )


def _content_op(value: object) -> str:
    """The ``op`` of a raw or parsed message; a message without one is an upsert."""
    if isinstance(value, dict):
        return str(value.get("op", "upsert"))
    return str(getattr(value, "op", "upsert"))


ContentMessage = Annotated[
    Annotated[ContentUpsert, Tag("upsert")] | Annotated[ContentTombstone, Tag("delete")],
    Discriminator(_content_op),
]

__all__ = [
    "CONTENT_SCHEMA_VERSION",
    "MAX_VERSION",
    "ContentMessage",
    "ContentTombstone",
    "ContentUpsert",
    "MetadataValue",
    "version_from_timestamp",
]
