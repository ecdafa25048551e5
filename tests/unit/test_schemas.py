from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas import (
    ALL_TOPICS,
    BehaviourEvent,
    ContentMessage,
    ContentTombstone,
    ContentUpsert,
    DeadLetterRecord,
    content_key,
    events_key,
)
from schemas.export import MESSAGES, stale_schema_files

SEGMENT_TRACK = {
    "type": "track",
    "event": "Product Viewed",
    "userId": "user-1",
    "anonymousId": "anon-9",
    "messageId": "ajs-3f2b",
    "timestamp": "2024-05-01T12:00:00.000Z",
    "properties": {"product_id": "sku-1", "price": 9.5},
    "context": {"library": {"name": "analytics-python", "version": "2.3.2"}},
    "integrations": {},
    "sentAt": "2024-05-01T12:00:01Z",
}


def test_committed_json_schemas_are_up_to_date() -> None:
    assert stale_schema_files() == [], "run `attune schemas export` and commit schemas/json"


def test_every_message_has_a_schema_version_and_every_topic_a_payload() -> None:
    for model in MESSAGES.values():
        assert model.model_fields["schema_version"].default == 1
    for topic in ALL_TOPICS:
        assert topic.partitions >= 1
        assert topic.payloads


def test_segment_track_call_is_accepted_unchanged() -> None:
    event = BehaviourEvent.model_validate({**SEGMENT_TRACK, "tenant": "acme"})

    assert event.message_id == "ajs-3f2b"
    assert event.user_key == "user-1"
    assert event.properties.item_id == "sku-1"  # Segment e-commerce name accepted
    assert event.properties.model_extra == {"price": 9.5}
    assert event.timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)
    dumped = event.model_dump(mode="json")
    assert (dumped["messageId"], dumped["userId"]) == ("ajs-3f2b", "user-1")
    assert BehaviourEvent.model_validate_json(event.model_dump_json()) == event


def test_anonymous_user_is_keyed_by_anonymous_id() -> None:
    payload = {**SEGMENT_TRACK, "tenant": "acme"}
    del payload["userId"]
    assert BehaviourEvent.model_validate(payload).user_key == "anon-9"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messageId": None}, "messageId"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"tenant": "Not A Tenant"}, "tenant"),
        ({"type": "alias"}, "type"),
        ({"properties": {"rating": 11}}, "properties.rating"),
    ],
)
def test_invalid_events_name_the_field(change: dict[str, object], field: str) -> None:
    payload = {**SEGMENT_TRACK, "tenant": "acme", **change}
    with pytest.raises(ValidationError) as raised:
        BehaviourEvent.model_validate(payload)
    locations = {".".join(map(str, e["loc"])) for e in raised.value.errors()}
    assert field in locations


def test_an_event_needs_a_user_and_a_track_call_needs_an_event_name() -> None:
    base = {"tenant": "acme", "messageId": "m", "timestamp": "2024-01-01T00:00:00Z"}
    with pytest.raises(ValidationError, match="userId or anonymousId"):
        BehaviourEvent.model_validate({**base, "event": "view"})
    with pytest.raises(ValidationError, match="'event' is required"):
        BehaviourEvent.model_validate({**base, "userId": "u"})
    page = BehaviourEvent.model_validate({**base, "userId": "u", "type": "page", "name": "Home"})
    assert page.event is None


def test_content_version_defaults_to_updated_at_in_microseconds() -> None:
    item = ContentUpsert(
        tenant="acme",
        item_id="m1",
        title="Heat",
        updated_at="2024-01-01T00:00:00",  # type: ignore[arg-type]
    )
    assert item.version == 1_704_067_200_000_000  # naive timestamps are UTC
    explicit = ContentUpsert(
        tenant="acme", item_id="m1", title="Heat", updated_at=item.updated_at, version=7
    )
    assert explicit.version == 7


def test_content_text_to_embed_joins_the_text_fields() -> None:
    item = ContentUpsert(
        tenant="acme", item_id="m1", title="Heat", description="A heist.", body=None,
        updated_at=datetime(2024, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    assert item.text_to_embed() == "Heat\nA heist."


def test_content_messages_are_told_apart_by_op() -> None:
    adapter: TypeAdapter[ContentUpsert | ContentTombstone] = TypeAdapter(ContentMessage)
    tombstone = adapter.validate_json(
        b'{"op":"delete","tenant":"acme","item_id":"m1","updated_at":"2024-01-01T00:00:00Z"}'
    )
    assert isinstance(tombstone, ContentTombstone)
    upsert = adapter.validate_json(  # no "op": an upsert
        b'{"tenant":"acme","item_id":"m1","title":"Heat","updated_at":"2024-01-01T00:00:00Z"}'
    )
    assert isinstance(upsert, ContentUpsert)
    with pytest.raises(ValidationError, match="title"):
        adapter.validate_python(
            {"op": "upsert", "tenant": "acme", "item_id": "m1", "updated_at": "2024-01-01T00:00Z"}
        )
    with pytest.raises(ValidationError, match=r"union_tag_invalid|does not match"):
        adapter.validate_python({"op": "merge", "tenant": "acme", "item_id": "m1"})


def test_unknown_schema_version_is_rejected() -> None:
    with pytest.raises(ValidationError, match="schema_version"):
        BehaviourEvent.model_validate({**SEGMENT_TRACK, "tenant": "acme", "schema_version": 2})


def test_dead_letter_keeps_the_original_bytes() -> None:
    record = DeadLetterRecord(
        topic="attune.events", partition=3, offset=42, key=b"acme/u1", value=b"\xff{not json",
        reason="invalid_json", error="Expecting value: line 1 column 1", consumer="usermodel",
    )  # fmt: skip
    again = DeadLetterRecord.model_validate_json(record.model_dump_json())
    assert again.value == b"\xff{not json"
    assert again.key == b"acme/u1"


def test_keys_carry_the_tenant() -> None:
    assert content_key("acme", "42") == b"acme/42"
    assert events_key("acme", "u1") == b"acme/u1"
