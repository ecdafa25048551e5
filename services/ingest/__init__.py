"""The ingest service: HTTP -> Kafka."""

from services.ingest.app import create_app, ingest_router
from services.ingest.publish import MessageTooLarge, PublishFailed, publish_all

__all__ = ["MessageTooLarge", "PublishFailed", "create_app", "ingest_router", "publish_all"]
