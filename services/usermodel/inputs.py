"""What the fold takes in: its configuration and one event as fold_user.lua reads it
(the name it counts, the tags and traits it may keep, the messageId it deduplicates
by, its event and arrival times), and an outbox entry as fold_tenant.lua reads it."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.events import BehaviourEvent
from services.common.records import Envelope
from services.common.settings import Settings
from services.common.userstore.decay import DAY_MS, DecayRates

MAX_TAGS_PER_EVENT = 32
MAX_TAG_CHARS = 100  # longer tags are not kept
MAX_TRAIT_NAME_CHARS = 100  # longer trait names are not kept
MAX_TRAIT_VALUE_BYTES = 1_024  # traits whose JSON value is longer are not kept


@dataclass(frozen=True)
class FoldConfig:
    event_weights: Mapping[str, float]
    default_event_weight: float = 1.0
    rating_weight: float = 2.0
    rating_prior_mean: float = 3.0
    rating_prior_count: float = 2.0
    recent_items_limit: int = 200
    tag_half_life_days: float = 30.0
    trending_half_life_days: float = 7.0
    popularity_half_life_days: float = 730.0
    cooccurrence_window: int = 5
    max_clock_skew_ms: int = 86_400_000
    dedupe_max_ids: int = 1_000
    dedupe_window_hours: float = 24.0
    max_event_names: int = 50
    max_tags_per_user: int = 200
    max_traits: int = 64
    inactive_user_ttl_days: float = 0.0
    max_ranked_items: int = 100_000
    max_cooccurring: int = 1_000

    @classmethod
    def from_settings(cls, settings: Settings) -> FoldConfig:
        return cls(
            event_weights=dict(settings.event_weights),
            default_event_weight=settings.default_event_weight,
            rating_weight=settings.rating_weight,
            rating_prior_mean=settings.rating_prior_mean,
            rating_prior_count=settings.rating_prior_count,
            recent_items_limit=settings.recent_items_limit,
            tag_half_life_days=settings.tag_half_life_days,
            trending_half_life_days=settings.trending_half_life_days,
            popularity_half_life_days=settings.popularity_half_life_days,
            cooccurrence_window=settings.cooccurrence_window,
            max_clock_skew_ms=int(settings.max_clock_skew_s * 1000),
            dedupe_max_ids=settings.dedupe_max_ids,
            dedupe_window_hours=settings.dedupe_window_hours,
            max_event_names=settings.max_event_names,
            max_tags_per_user=settings.max_tags_per_user,
            max_traits=settings.max_traits,
            inactive_user_ttl_days=settings.inactive_user_ttl_days,
            max_ranked_items=settings.max_ranked_items,
            max_cooccurring=settings.max_cooccurring,
        )

    @property
    def decay(self) -> DecayRates:
        """The rates the readers decay the stored scores with (the same half-lives)."""
        return DecayRates(
            tag_half_life_days=self.tag_half_life_days,
            trending_half_life_days=self.trending_half_life_days,
            popularity_half_life_days=self.popularity_half_life_days,
        )

    def tenant_script_config(self, *, direct: bool = False) -> str:
        decay = self.decay
        return json.dumps(
            {
                "trending_rate": decay.trending_rate_per_ms,
                "popularity_rate": decay.popularity_rate_per_ms,
                "marks": not direct,
                "max_ranked": self.max_ranked_items,
                "max_cooccurring": self.max_cooccurring,
            }
        )

    def user_script_config(self, *, direct: bool = False) -> str:
        return json.dumps(
            {
                "direct": direct,
                "rating_weight": self.rating_weight,
                "rating_prior_mean": self.rating_prior_mean,
                "rating_prior_count": self.rating_prior_count,
                "recent_limit": self.recent_items_limit,
                "tag_half_life_ms": self.decay.tag_half_life_ms,
                "cooccurrence_window": self.cooccurrence_window,
                "dedupe_ids": self.dedupe_max_ids,
                "dedupe_window_ms": int(self.dedupe_window_hours * 3_600_000),
                "max_event_names": self.max_event_names,
                "max_tags": self.max_tags_per_user,
                "max_traits": self.max_traits,
                "ttl_ms": int(self.inactive_user_ttl_days * DAY_MS),
            }
        )

    def weight_of(self, event_name: str) -> float:
        return self.event_weights.get(event_name, self.default_event_weight)


def event_name(event: BehaviourEvent) -> str:
    """The name an event is counted and weighted under: the track event, else its type."""
    return event.event if event.type == "track" and event.event else event.type


def event_tags(event: BehaviourEvent) -> list[str]:
    """Tags the event carries: ``properties.tags`` (list) and ``properties.category``."""
    extra = event.properties.model_extra or {}
    found: list[str] = []
    tags = extra.get("tags")
    if isinstance(tags, list):
        found.extend(str(tag).strip() for tag in tags if isinstance(tag, str | int))
    category = extra.get("category")
    if isinstance(category, str):
        found.append(category.strip())
    kept = (tag for tag in found if tag and len(tag) <= MAX_TAG_CHARS)
    return list(dict.fromkeys(kept))[:MAX_TAGS_PER_EVENT]


def identify_traits(event: BehaviourEvent) -> dict[str, Any]:
    """Traits of an identify call: top-level (Segment) or in context.traits (RudderStack)."""
    if event.type != "identify":
        return {}
    in_context = event.context.get("traits")
    traits = {**(in_context if isinstance(in_context, dict) else {}), **event.traits}
    return {key: _storable(value) for key, value in traits.items()}


_INT64 = range(-(2**63), 2**63)


def _storable(value: Any) -> Any:
    """A trait as the fold can pass it on: an integer beyond 64 bits (valid JSON, which
    orjson refuses to write) becomes the double Lua would make of it, or its digits
    when no double holds it."""
    if isinstance(value, dict):
        return {key: _storable(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_storable(inner) for inner in value]
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        try:
            return float(value)
        except OverflowError:
            return str(value)
    return value


def kept_traits(traits: dict[str, Any]) -> list[list[Any]]:
    """The traits the fold may keep, as [name, value] pairs sorted by name (the order
    fold_user.lua admits new names in, up to the cap): not too long a name or value."""
    return [
        [name, value]
        for name, value in sorted(traits.items())
        if len(name) <= MAX_TRAIT_NAME_CHARS and len(orjson.dumps(value)) <= MAX_TRAIT_VALUE_BYTES
    ]


def event_time_ms(envelope: Envelope[BehaviourEvent], config: FoldConfig) -> int:
    """When the event happened, as the fold counts it: its timestamp, but no later than
    its Kafka record's time plus the allowed clock skew (ingest refuses such events; a
    producer writing to Kafka directly may not), so that one event from a wrong clock
    cannot move its tenant's decayed scores years ahead. The record time is in the log:
    a replay folds the same time."""
    event_ms = int(envelope.message.timestamp.timestamp() * 1000)
    if envelope.timestamp_ms > 0:
        return min(event_ms, envelope.timestamp_ms + config.max_clock_skew_ms)
    return event_ms


def dedupe_id(message_id: str) -> str:
    """What the deduplication window keeps of a messageId: 96 bits of its hash (16
    characters, whatever the id's length; a false match within one user's window is
    about 2^-77 likely)."""
    return base64.b64encode(hashlib.blake2b(message_id.encode(), digest_size=12).digest()).decode()


def fold_input(envelope: Envelope[BehaviourEvent], config: FoldConfig) -> dict[str, Any]:
    """One event as fold_user.lua reads it (JSON false, never null, for absent values)."""
    event = envelope.message
    name = event_name(event)
    rating = event.properties.rating
    time_ms = event_time_ms(envelope, config)
    return {
        "partition": envelope.partition_id,
        "offset": envelope.offset,
        "message_id": dedupe_id(event.message_id),
        "time_ms": time_ms,
        # Arrival: the Kafka record's time (in the log, so a replay sees the same).
        "arrival_ms": envelope.timestamp_ms if envelope.timestamp_ms > 0 else time_ms,
        "event": name,
        "item_id": event.properties.item_id or False,
        "weight": config.weight_of(name) if rating is None else False,
        "rating": rating if rating is not None else False,
        "tags": event_tags(event),
        "traits": kept_traits(identify_traits(event)) or False,
    }


_SHORT_OUTBOX_KEYS = {
    "p": "partition", "o": "offset", "it": "item_id", "s": "strength", "t": "time_ms",
    "co": "pairs",
}  # fmt: skip


def outbox_entry(raw: bytes | str) -> dict[str, Any]:
    """One tenant update from a user's outbox. An outbox left by a crash of a version
    that wrote two-letter keys is read too, so that an upgrade never blocks a partition."""
    entry: dict[str, Any] = orjson.loads(raw)
    if "p" in entry:
        return {_SHORT_OUTBOX_KEYS.get(key, key): value for key, value in entry.items()}
    return entry


__all__ = [
    "MAX_TAGS_PER_EVENT",
    "MAX_TAG_CHARS",
    "MAX_TRAIT_NAME_CHARS",
    "MAX_TRAIT_VALUE_BYTES",
    "FoldConfig",
    "dedupe_id",
    "event_name",
    "event_tags",
    "event_time_ms",
    "fold_input",
    "identify_traits",
    "kept_traits",
    "outbox_entry",
]
