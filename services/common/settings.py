"""All configuration, from ``ATTUNE_*`` environment variables, validated at start-up.

One class for every service: a service reads the fields it needs. Build it with
:func:`load_settings`, which turns a validation error into a message naming the
environment variable at fault.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.apikeys import TENANT_PATTERN, check_keys, shared_across_tenants

ENV_PREFIX = "ATTUNE_"

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Strength of an interaction by event name (Attune's short names and Segment's
# e-commerce and video spec names). Negative values push items and tags away.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "Product Viewed": 1.0,
    "Product Clicked": 1.0,
    "Video Playback Started": 1.0,
    "like": 3.0,
    "share": 3.0,
    "add_to_cart": 3.0,
    "Product Added": 3.0,
    "Product Added to Wishlist": 3.0,
    "Video Content Completed": 3.0,
    "purchase": 5.0,
    "Order Completed": 5.0,
    "dislike": -3.0,
    "hide": -3.0,
    "Product Removed": -1.0,
}


_ORIGIN = re.compile(r"^https?://[^/\s]+$")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "attune"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, frozen=True
    )

    # Kafka
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_enable_idempotence: bool = Field(
        default=True,
        description="Idempotent producer; the embedded broker (Tansu) rejects it, so "
        "the embedded stack turns it off.",
    )
    kafka_session_timeout_ms: Annotated[int, Field(ge=6_000, le=300_000)] = 10_000
    kafka_log_may_reset: bool = Field(
        default=False,
        description="The broker may lose its log and reuse offsets (the embedded, memory-only "
        "broker does on a restart): consumers then look for reset partitions, and a "
        "consumer left past the end of a partition's log goes back to its start (that "
        "broker answers such fetches with nothing, not OFFSET_OUT_OF_RANGE). Never with "
        "Apache Kafka.",
    )
    kafka_group_prefix: str = Field(default="attune", description="Consumer group prefix.")

    # Redis
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="redis:// or rediss:// URL; may hold a password, so it is never logged.",
    )

    # Vector index
    vector_index: Literal["edge", "qdrant"] = Field(
        default="edge",
        description="'edge': Qdrant Edge in process (one process owns the folder); "
        "'qdrant': a Qdrant server or Qdrant Cloud through qdrant-client.",
    )
    vector_index_path: Path = Field(
        default=Path(".attune/vectors"), description="Folder of the Qdrant Edge shard."
    )
    qdrant_url: AnyUrl | None = Field(default=None, description="Qdrant server URL.")
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = Field(default="attune_items", pattern=r"^[A-Za-z0-9_-]{1,200}$")

    # Embedding model
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL, description="Any model fastembed supports."
    )
    embedding_model_path: Path | None = Field(
        default=None,
        description="Local folder holding the model files. Unset with the default model: "
        "the folder `attune model fetch` assembles under the cache dir.",
    )
    embedding_threads: Annotated[int, Field(ge=1, le=64)] | None = None
    embedding_batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    cache_dir: Path = Field(default_factory=default_cache_dir)

    # HTTP (ingest and query)
    http_host: str = Field(
        default="127.0.0.1",
        description="Where a service listens. On any address but loopback, `attune run "
        "ingest|query` refuses to start without its keys unless ATTUNE_ALLOW_OPEN is true.",
    )
    http_port: Annotated[int, Field(ge=0, le=65_535)] = 8000
    # Access: write keys, read keys, the explicit switch for running open, rate limits, CORS.
    write_keys: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description='Tenant -> write keys, as JSON: {"acme": ["wk-...", "wk-..."]} (a single '
        "key may be given as a string). A write key only ingests (events, content, the "
        "Segment API): safe to ship in a browser or an app.",
    )
    read_keys: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description="Tenant -> read keys, as JSON like ATTUNE_WRITE_KEYS. A read key only "
        "queries (recommendations, search, user profiles with their traits): keep it on "
        "servers. Once any key is set, every API request needs a key of the right kind; with "
        "none, the tenant comes from the X-Attune-Tenant header or the body (else the default).",
    )
    api_keys: SecretStr | None = Field(
        default=None,
        description="Removed: split into ATTUNE_WRITE_KEYS and ATTUNE_READ_KEYS; set, it "
        "stops the start.",
    )
    allow_open: bool = Field(
        default=False,
        description="Serve ingest and query without keys on an address other than loopback "
        "(ATTUNE_HTTP_HOST), e.g. behind a proxy that authenticates. Off: they refuse to start.",
    )
    rate_limit_per_s: Annotated[float, Field(ge=0)] = Field(
        default=0.0,
        description="Requests per second each API key may make (a token bucket per key and "
        "process); over it, 429 with Retry-After. 0: no limit.",
    )
    rate_limit_burst: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=100, description="Requests a key may make at once before its rate applies."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Browser origins allowed to call the APIs, as JSON: ["https://shop.example"] '
        '(or ["*"]). Empty: no CORS headers, preflights refused.',
    )
    default_tenant: str = Field(default="default", pattern=TENANT_PATTERN.pattern)
    max_body_bytes: Annotated[int, Field(ge=1_024)] = Field(
        default=5 * 1024 * 1024,
        description="Larger request bodies (also after gunzip) get 413; RudderStack sends 4 MB.",
    )
    publish_timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=10.0, description="Ingest answers 503 when the broker has not acked by then."
    )
    max_context_bytes: Annotated[int, Field(ge=256)] = Field(
        default=8_192,
        description="Largest Segment `context` an event may carry (as JSON). A batch's "
        "context is copied into each of its events: this bounds what one body can grow to.",
    )
    max_clock_skew_s: Annotated[float, Field(ge=0)] = Field(
        default=86_400.0,
        description="How far ahead of its arrival an event's timestamp may be: ingest "
        "refuses later ones (422), and the user model folds an event that reached Kafka "
        "another way at its Kafka record time plus this at the latest.",
    )

    # Consumers
    consumer_max_records: Annotated[int, Field(ge=1, le=50_000)] = Field(
        default=2_000, description="Most messages a consumer takes per batch."
    )
    consumer_fetch_max_wait_ms: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=100,
        description="How long the broker may hold a fetch waiting for data: the bound on "
        "how long an event waits before its consumer sees it.",
    )
    max_message_bytes: Annotated[int, Field(ge=1_024)] = Field(
        default=1_000_000, description="Larger Kafka messages go to the dead-letter topic."
    )
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=8.0,
        description="On SIGTERM a consumer finishes its batch for at most this long, then "
        "abandons it uncommitted (it is redelivered).",
    )

    # User model (Redis)
    redis_namespace: str = Field(
        default="attune", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Key prefix."
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Strength of an interaction per event name, as JSON. A 'rating' event is "
        "scored by the rating instead (see rating_weight).",
    )
    default_event_weight: float = Field(
        default=1.0, description="Strength of an event whose name is not in event_weights."
    )
    rating_weight: float = Field(
        default=2.0, description="Strength per star above (or below) the user's mean rating."
    )
    rating_prior_mean: float = Field(
        default=3.0, description="A new user's mean rating, before their own ratings count."
    )
    rating_prior_count: Annotated[float, Field(ge=0)] = Field(
        default=2.0, description="How many ratings the prior mean weighs."
    )
    recent_items_limit: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=200, description="Interactions kept per user."
    )
    tag_half_life_days: Annotated[float, Field(gt=0)] = 30.0
    trending_half_life_days: Annotated[float, Field(gt=0)] = 7.0
    popularity_half_life_days: Annotated[float, Field(ge=0)] = Field(
        default=730.0,
        description="Half-life of the popularity signal; 0: all-time popularity (no decay). "
        "The default is the one `attune eval movielens` chose on validation "
        "(docs/relevance.md shows the comparison).",
    )
    cooccurrence_window: Annotated[int, Field(ge=1, le=1_000)] = Field(
        default=5,
        description="How many of the user's latest liked items pair with a newly liked one; "
        "each one more costs the fold a Redis write per liked item.",
    )
    # Bounds of the user model's memory (docs/operations.md, "Memory bounds"). Every
    # rule is a function of the folded events in order, so a replay gives the same state.
    dedupe_max_ids: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=1_000,
        description="messageIds kept per user to drop a producer's duplicates, newest "
        "arrivals (Kafka record time) first; 0: no messageId deduplication.",
    )
    dedupe_window_hours: Annotated[float, Field(ge=0)] = Field(
        default=24.0,
        description="A messageId is forgotten once the user's messages have arrived for "
        "this long after it (Kafka record time); 0: kept until dedupe_max_ids pushes it out.",
    )
    max_event_names: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=50,
        description="Distinct event names counted per user; further names count as '(other)'.",
    )
    max_tags_per_user: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=200,
        description="Tag affinities kept per user: past it, the weakest (by absolute decayed "
        "affinity) is dropped.",
    )
    max_traits: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=64,
        description="Traits kept per user (identify calls); new trait names past it are "
        "ignored, known ones still update.",
    )
    inactive_user_ttl_days: Annotated[float, Field(ge=0)] = Field(
        default=0.0,
        description="A user's model expires this long after their latest event time; 0: never.",
    )
    max_ranked_items: Annotated[int, Field(ge=100, le=10_000_000)] = Field(
        default=100_000,
        description="Items kept per tenant in trending and in popularity (the lowest "
        "scores go); an item dropped from popularity loses its co-occurrence list.",
    )
    max_cooccurring: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=1_000,
        description="Co-occurring items kept per item (the most frequent).",
    )

    # Query: how recommendations, similar items and personalized search blend signals.
    # The recommendation weights were chosen on MovieLens validation windows (before the
    # test period) by `attune eval movielens`; see docs/relevance.md.
    recommend_weight_content: float = Field(
        default=1.0, description="Similarity to the user's content profile."
    )
    recommend_weight_cooccurrence: float = Field(
        default=0.5, description="Engaged with by the same users as the user's items."
    )
    recommend_weight_trending: float = Field(
        default=0.25, description="Time-decayed popularity (trending_half_life_days)."
    )
    recommend_weight_popular: float = Field(
        default=1.0,
        description="Popularity (summed positive strength, decayed with "
        "popularity_half_life_days), a prior next to the "
        "personal signals; with trending, what a user without history is ranked by.",
    )
    recommend_weight_tags: float = Field(default=0.5, description="The user's tag affinities.")
    recommend_dislike_factor: Annotated[float, Field(ge=0)] = Field(
        default=2.0,
        description="How much harder what a user disliked (or rated below their mean) "
        "pushes a recommendation down than what they liked lifts it: the weight of a "
        "signal's negative score (closer to a disliked item, co-occurring with one, "
        "carrying a disliked tag) is its weight times this; 0: dislikes do not count.",
    )
    query_cache_entries: Annotated[int, Field(ge=0)] = Field(
        default=2_000,
        description="How many users' gathered candidates, and how many items' similar "
        "items, a query process keeps (least recently used go first; 0: none). A user's "
        "entry serves only the user model it was gathered from: their own events show at "
        "once; an entry of an older catalogue is gathered again at its next use. A user's "
        "entry holds a few hundred candidates with their scores and explanations "
        "(docs/benchmarks.md: the query process's memory before and after 610 users).",
    )
    query_cache_ttl_s: Annotated[float, Field(gt=0)] = Field(
        default=300.0,
        description="Age past which a kept entry is gathered again in the background: what "
        "other users' events change (co-occurrence, trending) reaches recommendations and "
        "similar items within about this long.",
    )
    recommend_popular_evidence: Annotated[float, Field(ge=0)] = Field(
        default=50.0,
        description="Popularity counts fully once the most popular item has this much "
        "positive strength (a like is 3, a rating a star above the user's mean 2); below, "
        "proportionally less, so that on a young tenant a handful of events does not "
        "outweigh a user's own evidence.",
    )
    recommend_cooccurrence_sources: Annotated[int, Field(ge=1, le=200)] = Field(
        default=10,
        description="How many of the user's profile items co-occurrence starts from (at most "
        "profile_items count).",
    )
    recommend_cooccurrence_per_source: Annotated[int, Field(ge=1, le=1_000)] = Field(
        default=50, description="Co-occurring items read per source item (the most frequent)."
    )
    recommend_diversity: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0,
        description="Default MMR diversity of recommendations: 0 keeps the blend's order, "
        "1 favours items unlike those already listed; a request may ask for its own.",
    )
    similar_weight_cooccurrence: float = Field(
        default=0.5, description="Co-occurrence next to content similarity for similar items."
    )
    search_weight_profile: float = Field(
        default=0.3, description="Weight of the user's profile when search is personalized."
    )
    profile_items: Annotated[int, Field(ge=1, le=200)] = Field(
        default=20, description="How many of the user's items form their content profile."
    )
    profile_half_life_days: Annotated[float, Field(gt=0)] = Field(
        default=30.0,
        description="Recency weighting of the profile, relative to the user's last event.",
    )
    query_ranked_cache_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=1.0,
        description="How long the query service reuses a tenant's trending and popular "
        "lists read from Redis (per process; 0: read them on every request). A user's own "
        "model is always read fresh.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] | None = Field(
        default=None,
        description="Log lines as JSON (with trace_id and span_id) or as text; default: "
        "json for `attune run`, text for the interactive commands (`attune dev`, replay).",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value

    @field_validator("write_keys", "read_keys", mode="before")
    @classmethod
    def _one_key_may_be_a_string(cls, value: object) -> object:
        if isinstance(value, dict):
            return {t: [k] if isinstance(k, str | SecretStr) else k for t, k in value.items()}
        return value

    @field_validator("write_keys", "read_keys")
    @classmethod
    def _check_keys(cls, value: dict[str, list[SecretStr]]) -> dict[str, list[SecretStr]]:
        check_keys(value)
        return value

    @field_validator("api_keys")
    @classmethod
    def _api_keys_removed(cls, value: SecretStr | None) -> None:
        if value is not None:
            raise ValueError(
                "removed: put write keys (ingest only) in ATTUNE_WRITE_KEYS and read keys "
                "(query) in ATTUNE_READ_KEYS, as JSON tenant -> list of keys; a key may be "
                "in both to do both"
            )

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is no origin (scheme://host[:port], no path)")
        return value

    @model_validator(mode="after")
    def _one_tenant_per_key(self) -> Settings:
        shared = shared_across_tenants(self.write_keys, self.read_keys)
        if shared is not None:
            raise ValueError(
                f"ATTUNE_WRITE_KEYS of tenant {shared[0]!r} and ATTUNE_READ_KEYS of tenant "
                f"{shared[1]!r} share a key: a key names one tenant"
            )
        return self

    @property
    def keys_required(self) -> bool:
        """Whether the APIs authenticate: once any key is set, every request needs one."""
        return bool(self.write_keys or self.read_keys)

    @property
    def resolved_embedding_model_path(self) -> Path | None:
        """Where the model is read from; None lets fastembed use its own cache/hub."""
        if self.embedding_model_path is not None:
            return self.embedding_model_path
        if self.embedding_model == DEFAULT_EMBEDDING_MODEL:
            return self.cache_dir / "models" / "all-MiniLM-L6-v2-int8"
        return None


class SettingsError(ValueError):
    """The environment holds an invalid ATTUNE_* variable; the message names it."""


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        field_path = ".".join(str(part) for part in problem["loc"])
        # The offending value is left out on purpose: it may be a secret.
        if field_path:
            lines.append(f"{ENV_PREFIX + field_path.upper()}: {problem['msg']}")
        else:  # a check across variables names them in its message
            lines.append(problem["msg"])
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and overrides) and validate; raise SettingsError naming the
    variable at fault."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "load_settings"]
