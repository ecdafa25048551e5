"""The embedder service: content topic -> embeddings -> vector index.

- :func:`~services.embedder.service.mount`: what it adds to a process;
- :mod:`.subscriber`: the Kafka entry (the content subscriber, on the shared skeleton);
- :func:`~services.embedder.apply.apply_content`: the domain step, a batch of content
  messages -> index writes;
- :mod:`.replay`: rebuild the collection from the topic.
"""

from services.embedder.apply import ApplyStats, DocumentEmbedder, apply_content
from services.embedder.service import mount
from services.embedder.subscriber import consumer_group, content_consumer, content_router

__all__ = [
    "ApplyStats",
    "DocumentEmbedder",
    "apply_content",
    "consumer_group",
    "content_consumer",
    "content_router",
    "mount",
]
