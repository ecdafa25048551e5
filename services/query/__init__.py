"""The query service: HTTP reads from the vector index and Redis."""
