"""The ingest service: HTTP -> Kafka."""
