"""What one event becomes for fold_user.lua: the lengths the user model keeps, the
order new traits are admitted in, the messageId kept for deduplication, the arrival."""

from __future__ import annotations

from typing import Any

from schemas.events import BehaviourEvent
from services.common.records import Envelope
from services.usermodel.fold import (
    MAX_TAG_CHARS,
    MAX_TRAIT_NAME_CHARS,
    MAX_TRAIT_VALUE_BYTES,
    FoldConfig,
    dedupe_id,
    fold_input,
)

CONFIG = FoldConfig(event_weights={"like": 3.0})


def envelope(payload: dict[str, Any], *, record_ms: int = 0) -> Envelope[BehaviourEvent]:
    base = {"tenant": "acme", "userId": "ann", "messageId": "m-1",
            "timestamp": "2024-05-01T12:00:00Z"}  # fmt: skip
    return Envelope(
        message=BehaviourEvent.model_validate({**base, **payload}), topic="attune.events",
        partition=0, offset=7, key=None, timestamp_ms=record_ms,
    )  # fmt: skip


def test_overlong_tags_and_traits_are_not_kept_and_traits_come_sorted() -> None:
    tags = ["x" * MAX_TAG_CHARS, "y" * (MAX_TAG_CHARS + 1), "ok"]
    like = fold_input(
        envelope({"event": "like", "properties": {"item_id": "a", "tags": tags}}), CONFIG
    )
    assert like["tags"] == ["x" * MAX_TAG_CHARS, "ok"]

    traits = {
        "zeta": 1, "alpha": {"nested": [1, 2]}, "n" * (MAX_TRAIT_NAME_CHARS + 1): 1,
        "big": "v" * MAX_TRAIT_VALUE_BYTES,  # its JSON has two quotes more
        "fits": "v" * (MAX_TRAIT_VALUE_BYTES - 2),
    }  # fmt: skip
    identify = fold_input(envelope({"type": "identify", "traits": traits}), CONFIG)
    assert identify["traits"] == [
        ["alpha", {"nested": [1, 2]}], ["fits", "v" * (MAX_TRAIT_VALUE_BYTES - 2)], ["zeta", 1],
    ]  # fmt: skip


def test_the_dedupe_id_is_a_short_hash_and_arrival_is_the_record_time() -> None:
    long_id = "m" * 256
    event = fold_input(envelope({"event": "like", "messageId": long_id}, record_ms=5), CONFIG)
    assert event["message_id"] == dedupe_id(long_id)
    assert len(event["message_id"]) == 16
    assert dedupe_id(long_id) != dedupe_id(long_id[:-1] + "n")
    assert event["arrival_ms"] == 5
    no_record = fold_input(envelope({"event": "like"}), CONFIG)
    assert no_record["arrival_ms"] == no_record["time_ms"]
