"""The embedder service: content topic -> embeddings -> vector index.

- :func:`content_router` builds the Kafka subscriber (include it into a broker);
- :func:`apply_content` is the domain step: a batch of content messages -> index writes.
"""

from services.embedder.apply import ApplyStats, DocumentEmbedder, IndexUnavailable, apply_content
from services.embedder.service import ContentConsumer, consumer_group, content_router

__all__ = [
    "ApplyStats",
    "ContentConsumer",
    "DocumentEmbedder",
    "IndexUnavailable",
    "apply_content",
    "consumer_group",
    "content_router",
]
