"""The user-model service: events topic -> per-user model in Redis.

- :func:`~services.usermodel.service.mount`: what it adds to a process;
- :mod:`.subscriber`: the Kafka entry (the events subscriber, on the shared skeleton);
- :mod:`.fold`: the domain step, a batch of events -> the fold scripts (``scripts/``);
- :mod:`.inputs`: its configuration (the caps among it) and what one event becomes;
- :mod:`.replay`: rebuild a namespace from the topic.

The Redis layout it writes, which the query service reads, is in
services/common/userstore/.
"""

from services.usermodel.fold import FoldConfig, UserModelFolder
from services.usermodel.service import mount
from services.usermodel.subscriber import consumer_group, events_consumer, events_router

__all__ = [
    "FoldConfig",
    "UserModelFolder",
    "consumer_group",
    "events_consumer",
    "events_router",
    "mount",
]
