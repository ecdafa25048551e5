"""The workloads: MovieLens as the real one, synthetic items only to scale past it.

- Items: movies.csv (9,742 films) as content items, exactly as ``attune dev --movielens``
  loads them; their text is what the embedder embeds.
- Events: ratings.csv (100,836 ratings) as "rating" track events in timestamp order.
- Scale indexes: the most-rated films first; past the 9,742 films, synthetic items whose
  vectors are the vector of a real film plus noise (cosine ~0.9 to it), so that the index
  keeps the clustered shape of real embeddings. Embedding 100k texts would take ~10
  minutes on two cores; these vectors are written straight to the index.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.content import ContentUpsert
from schemas.events import BehaviourEvent
from services.app.datasets import (
    MOVIELENS_TENANT,
    Message,
    movielens_events,
    movielens_items,
    to_record,
)
from services.common.records import Envelope

TENANT = MOVIELENS_TENANT
"""The tenant the MovieLens items and events (and the freshness probes) belong to."""
INGEST_TENANT = "bench-ingest"
"""The tenant of the events the ingest figure posts (kept apart from MovieLens users)."""
LOAD_TENANT = "bench-load"
"""The tenant of the freshness figure's background load."""

Vectors = npt.NDArray[np.float32]

SEARCH_QUERIES: tuple[str, ...] = (
    "a heist that goes wrong",
    "animated film about toys that come to life",
    "a slow science fiction film about a crew far from Earth",
    "romantic comedy set in New York",
    "gritty crime drama about the mafia",
    "documentary about climate change",
    "superhero team saves the world",
    "a haunted house horror film",
    "coming of age story in a small town",
    "war film about soldiers in world war two",
    "courtroom drama with a twist ending",
    "musical about singers and dancers",
    "a detective solving a murder in the 1940s",
    "time travel paradox",
    "martial arts revenge film",
    "dystopian future with robots",
    "family adventure with talking animals",
    "biography of a famous musician",
    "space opera with epic battles",
    "psychological thriller about memory loss",
    "western with gunfights and outlaws",
    "teen comedy about a wild party",
    "zombie apocalypse survival",
    "fantasy quest with wizards and dragons",
    "political conspiracy thriller",
    "sports drama about an underdog team",
    "quirky independent film about a dysfunctional family",
    "disaster movie with a giant earthquake",
    "spy film with gadgets and car chases",
    "mind-bending dream heist",
    "pirates searching for treasure",
    "a road trip across America",
    "vampires in a modern city",
    "artificial intelligence that becomes self-aware",
    "a chef opening a restaurant",
    "prison escape drama",
    "alien invasion of Earth",
    "classic black and white film noir",
    "stop-motion animation for children",
    "serial killer investigation",
)


@dataclass
class MovieLens:
    """The data set, parsed once per run."""

    folder: Path
    items: list[ContentUpsert]
    events: list[BehaviourEvent]

    @property
    def texts(self) -> list[str]:
        return [item.text_to_embed() for item in self.items]

    def user_ids(self) -> list[str]:
        """Every user with a rating, in order of first appearance."""
        return list(dict.fromkeys(event.user_key for event in self.events))

    def items_by_popularity(self) -> list[int]:
        """Item positions, the most-rated first (ties in file order)."""
        counts = Counter(e.properties.item_id for e in self.events)
        order = range(len(self.items))
        return sorted(order, key=lambda i: -counts.get(self.items[i].item_id, 0))


def load_movielens(folder: Path) -> MovieLens:
    if not (folder / "movies.csv").exists() or not (folder / "ratings.csv").exists():
        raise FileNotFoundError(
            f"no MovieLens data in {folder} (movies.csv, ratings.csv): pass --data DIR"
        )
    return MovieLens(
        folder=folder,
        items=movielens_items(folder, tenant=TENANT),
        events=list(movielens_events(folder, tenant=TENANT)),
    )


def vectors_cache_key(model: str, model_path: Path | None, texts: Sequence[str]) -> str:
    """Names the cached vectors of ``texts`` under one embedding model."""
    digest = hashlib.sha256(f"{model}\n{model_path}\n".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:20]


def unit_rows(matrix: Vectors) -> Vectors:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalized: Vectors = (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)
    return normalized


def perturbed(vectors: Vectors, sources: Sequence[int], seed: int, noise: float = 0.5) -> Vectors:
    """For each source row, a unit vector near it: the row plus Gaussian noise of total
    norm ~``noise`` (0.5 gives a cosine of ~0.9 to the source)."""
    rng = np.random.default_rng(seed)
    base = vectors[np.asarray(sources, dtype=np.int64)]
    jitter = rng.normal(scale=noise / np.sqrt(vectors.shape[1]), size=base.shape)
    return unit_rows((base + jitter).astype(np.float32))


def synthetic_item(source: ContentUpsert, index: int) -> ContentUpsert:
    """A copy of a real item under a new id (its tags and metadata kept)."""
    return source.model_copy(
        update={"item_id": f"syn-{index}", "title": f"{source.title} (variant {index})"}
    )


@dataclass
class ScaleSet:
    """The items and vectors of one scale index."""

    size: int
    items: list[ContentUpsert]
    vectors: Vectors
    synthetic: int


def scale_set(data: MovieLens, vectors: Vectors, size: int, *, seed: int = 7) -> ScaleSet:
    """``size`` items: the most-rated films first, then synthetic ones past them."""
    order = data.items_by_popularity()
    real = order[:size]
    items = [data.items[i] for i in real]
    rows = [vectors[np.asarray(real, dtype=np.int64)]]
    extra = size - len(real)
    if extra > 0:
        rng = random.Random(seed)
        sources = [rng.randrange(len(data.items)) for _ in range(extra)]
        items.extend(synthetic_item(data.items[s], n) for n, s in enumerate(sources))
        rows.append(perturbed(vectors, sources, seed))
    return ScaleSet(size, items, np.concatenate(rows).astype(np.float32), max(extra, 0))


def partition_of(key: bytes, partitions: int) -> int:
    """The partition a keyed record lands on (the Java client's and aiokafka's rule)."""
    from aiokafka.partitioner import murmur2

    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def envelopes(events: Sequence[BehaviourEvent], partitions: int) -> list[Envelope[BehaviourEvent]]:
    """The events as the usermodel consumer would see them: partition by key, offsets
    counting up per partition, in production order."""
    offsets: Counter[int] = Counter()
    out = []
    for event in events:
        topic, key, _ = to_record(event)
        partition = partition_of(key, partitions)
        out.append(
            Envelope(
                message=event,
                topic=topic,
                partition=partition,
                offset=offsets[partition],
                key=key,
                timestamp_ms=0,
            )
        )
        offsets[partition] += 1
    return out


def retenanted(
    events: Sequence[BehaviourEvent], tenant: str, id_prefix: str
) -> list[BehaviourEvent]:
    """The same events under another tenant and fresh message ids."""
    return [
        event.model_copy(update={"tenant": tenant, "message_id": f"{id_prefix}{event.message_id}"})
        for event in events
    ]


def http_event(event: BehaviourEvent) -> dict[str, Any]:
    """An event as an SDK posts it to ``POST /v1/events`` (the tenant from the header)."""
    return event.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        exclude={"tenant", "received_at", "schema_version", "traits", "context"},
    )


def event_batches(events: Sequence[BehaviourEvent], size: int) -> Iterator[str]:
    """``POST /v1/events`` bodies of ``size`` events each."""
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        yield json.dumps({"events": [http_event(e) for e in chunk]}, separators=(",", ":"))


def records(messages: Sequence[Message]) -> list[tuple[str, bytes, bytes]]:
    return [to_record(message) for message in messages]


__all__ = [
    "INGEST_TENANT",
    "LOAD_TENANT",
    "SEARCH_QUERIES",
    "TENANT",
    "MovieLens",
    "ScaleSet",
    "envelopes",
    "event_batches",
    "http_event",
    "load_movielens",
    "partition_of",
    "perturbed",
    "records",
    "retenanted",
    "scale_set",
    "synthetic_item",
    "unit_rows",
    "vectors_cache_key",
]
