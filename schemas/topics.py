"""Every topic Attune reads or writes: its name, key, partitions and payload.

Keys carry the tenant as well as the id. Two tenants may both have an item
"42", and the content topic is compacted in production: keyed by item_id
alone, compaction would keep only one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from schemas.content import ContentTombstone, ContentUpsert
from schemas.deadletter import DeadLetterRecord
from schemas.events import BehaviourEvent


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    payloads: tuple[type[BaseModel], ...]
    description: str
    config: dict[str, str] = field(default_factory=dict)


CONTENT = TopicSpec(
    name="attune.content",
    key="{tenant}/{item_id}",
    partitions=6,
    payloads=(ContentUpsert, ContentTombstone),
    description="Content upserts and tombstones; the newest version of an item wins.",
    config={"cleanup.policy": "compact"},
)

EVENTS = TopicSpec(
    name="attune.events",
    key="{tenant}/{user_id}",
    partitions=6,
    payloads=(BehaviourEvent,),
    description="Behaviour events (Segment shape); keyed by user so each user's events "
    "stay in order.",
    # Kept for as long as the user model must be rebuildable from it.
    config={"cleanup.policy": "delete", "retention.ms": "-1"},
)

DEAD_LETTER = TopicSpec(
    name="attune.dead-letter",
    key="the original message's key",
    partitions=1,
    payloads=(DeadLetterRecord,),
    description="Messages a consumer could not apply, with the reason.",
    config={"cleanup.policy": "delete", "retention.ms": str(30 * 24 * 3600 * 1000)},
)

ALL_TOPICS: tuple[TopicSpec, ...] = (CONTENT, EVENTS, DEAD_LETTER)


def content_key(tenant: str, item_id: str) -> bytes:
    return f"{tenant}/{item_id}".encode()


def events_key(tenant: str, user_id: str) -> bytes:
    return f"{tenant}/{user_id}".encode()


__all__ = [
    "ALL_TOPICS",
    "CONTENT",
    "DEAD_LETTER",
    "EVENTS",
    "TopicSpec",
    "content_key",
    "events_key",
]
