"""The Redis client, built from the settings (nothing connects until first use)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.settings import Settings

# Errors that mean "Redis cannot take writes right now": consumers wait and retry.
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    OutOfMemoryError,  # maxmemory reached: writes come back once memory is freed
    ReadOnlyError,  # a replica, or a failover in progress
    MasterDownError,
    ClusterDownError,
    TryAgainError,
    ConnectionError,
    OSError,
)
# The same, as a script reports them (a Lua error carries the server's error in its text).
_OUTAGE_REPLIES = ("OOM ", "READONLY ", "LOADING ", "MASTERDOWN ", "CLUSTERDOWN ", "TRYAGAIN ")


def is_redis_outage(error: BaseException) -> bool:
    """Whether ``error`` means Redis is out (wait and retry) rather than that the
    request itself is wrong (which no retry would mend)."""
    if isinstance(error, REDIS_OUTAGE_ERRORS):
        return True
    if isinstance(error, ResponseError):
        text = str(error)
        return text.startswith(_OUTAGE_REPLIES) or any(f" {r}" in text for r in _OUTAGE_REPLIES)
    return False


MAX_CONNECTIONS = 64
"""Per client (one per process): far more than one event loop keeps busy."""


def make_redis(settings: Settings) -> Redis:
    """A client whose connections are bounded: past ``MAX_CONNECTIONS`` in use, a
    command waits for one (up to its timeout) rather than opening another, so that an
    overloaded process queues its requests instead of opening hundreds of connections,
    each slower to open than the last."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=MAX_CONNECTIONS,
        timeout=5.0,
        decode_responses=False,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=15,
    )
    return Redis.from_pool(pool)  # closing the client closes the pool


__all__ = ["REDIS_OUTAGE_ERRORS", "is_redis_outage", "make_redis"]
