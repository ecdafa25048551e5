"""Dead-letter records: a message a consumer could not apply, with the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import UtcDatetime, utc_now

DEAD_LETTER_SCHEMA_VERSION: Literal[1] = 1

DeadLetterReason = Literal[
    "invalid_json",
    "schema_violation",
    "unsupported_schema_version",
    "too_large",
    "processing_failed",
]


class DeadLetterRecord(BaseModel):
    """The original bytes and where they came from, so an operator can fix and re-send."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    schema_version: Literal[1] = Field(
        default=DEAD_LETTER_SCHEMA_VERSION, description="Version of this message's contract."
    )
    topic: str = Field(description="Topic the message was read from.")
    partition: int = Field(ge=0, description="Its partition.")
    offset: int = Field(ge=0, description="Its offset in that partition.")
    key: bytes | None = Field(default=None, description="The original key, base64.")
    value: bytes = Field(
        description="The original value bytes, base64; only the first 256 KiB of a larger "
        "value (see value_size), so that the record itself fits the broker."
    )
    value_size: int | None = Field(
        default=None, ge=0, description="Size of the original value in bytes."
    )
    reason: DeadLetterReason = Field(description="Machine-readable cause.")
    error: str = Field(description="Human-readable explanation, naming the bad field if any.")
    consumer: str = Field(description="Consumer group that rejected it.")
    failed_at: UtcDatetime = Field(default_factory=utc_now, description="When it was rejected.")


__all__ = ["DEAD_LETTER_SCHEMA_VERSION", "DeadLetterReason", "DeadLetterRecord"]
