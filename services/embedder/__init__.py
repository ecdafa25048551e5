"""The embedder service: content topic -> embeddings -> vector index."""
