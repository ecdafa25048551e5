"""Attune's public contract: every message and its topic, each with a schema_version."""

from schemas.content import (
    CONTENT_SCHEMA_VERSION,
    ContentMessage,
    ContentTombstone,
    ContentUpsert,
)
from schemas.deadletter import DEAD_LETTER_SCHEMA_VERSION, DeadLetterReason, DeadLetterRecord
from schemas.events import EVENT_SCHEMA_VERSION, BehaviourEvent, EventProperties
from schemas.topics import (
    ALL_TOPICS,
    CONTENT,
    DEAD_LETTER,
    EVENTS,
    TopicSpec,
    content_key,
    events_key,
)

__all__ = [
    "ALL_TOPICS",
    "CONTENT",
    "CONTENT_SCHEMA_VERSION",
    "DEAD_LETTER",
    "DEAD_LETTER_SCHEMA_VERSION",
    "EVENTS",
    "EVENT_SCHEMA_VERSION",
    "BehaviourEvent",
    "ContentMessage",
    "ContentTombstone",
    "ContentUpsert",
    "DeadLetterReason",
    "DeadLetterRecord",
    "EventProperties",
    "TopicSpec",
    "content_key",
    "events_key",
]
