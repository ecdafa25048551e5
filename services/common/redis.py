"""The Redis client, built from the settings (nothing connects until first use)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.settings import Settings

# Errors that mean "Redis is not reachable right now": consumers wait and retry.
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ConnectionError,
    OSError,
)


def make_redis(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        decode_responses=False,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=15,
    )


__all__ = ["REDIS_OUTAGE_ERRORS", "make_redis"]
