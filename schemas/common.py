"""Field types shared by every contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

TenantId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$"),
    Field(
        description="Tenant (application or customer) that owns the record. Lower-case letters, "
        "digits, '-' and '_', 1-64 characters. Tenants never see each other's data.",
        examples=["acme"],
    ),
]

ItemId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, strip_whitespace=True),
    Field(
        description="The producer's id of a content item, unique within a tenant.",
        examples=["movie-1"],
    ),
]

MetadataKey = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"),
    Field(description="A metadata field name: letters, digits and '_', not starting with a "
          "digit (it becomes a payload path in the vector index)."),
]  # fmt: skip

UserKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, strip_whitespace=True),
]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC so that ordering never depends on the host's zone.
    Times before 1970 are refused: versions and event times count from the epoch."""
    offset = value.utcoffset()
    if offset is None or (not offset and value.tzinfo is not UTC):
        value = value.replace(tzinfo=UTC)  # naive, or UTC under another tzinfo object
    elif offset:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None
    if value < EPOCH:
        raise ValueError("must be on or after 1970-01-01T00:00:00Z")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def utc_now() -> datetime:
    return datetime.now(UTC)
