"""The embedder's own Prometheus metrics; the consumer ones are in
services/common/metrics.py."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DOCS_EMBEDDED = Counter(
    "attune_embedder_docs_embedded",
    "Documents embedded (upserts after the newest-version-per-item pass).",
)
ITEMS_APPLIED = Counter(
    "attune_embedder_items",
    "Content messages by outcome: upserted or deleted in the index, or superseded by a "
    "newer version of the same item in the same batch.",
    ["outcome"],
)
EMBED_SECONDS = Histogram(
    "attune_embedder_embed_duration_seconds",
    "Time spent embedding the documents of one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

__all__ = ["DOCS_EMBEDDED", "EMBED_SECONDS", "ITEMS_APPLIED"]
