"""The ingest service: HTTP -> Kafka.

- :func:`~services.ingest.service.mount`: what it adds to a process;
- :mod:`.routes`: the HTTP entry (Attune's endpoints and the Segment/RudderStack API);
- :mod:`.messages`, :mod:`.segment`, :mod:`.publish`: validation and publishing.
"""

from services.ingest.publish import MessageTooLarge, PublishFailed, publish_all
from services.ingest.routes import ingest_router
from services.ingest.service import mount

__all__ = ["MessageTooLarge", "PublishFailed", "ingest_router", "mount", "publish_all"]
