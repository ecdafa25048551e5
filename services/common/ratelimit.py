"""Token buckets: a rate with a burst, per key, on an injectable clock."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Holds up to ``burst`` tokens, refilled at ``rate`` per second; a request takes one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = float(burst), now

    def take(self, now: float) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is one
        (nothing is taken then)."""
        elapsed = max(0.0, now - self.updated)  # a clock that steps back refills nothing
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One :class:`TokenBucket` per key, made on the key's first request. The caller
    bounds the keys (here: the configured API keys), so the buckets are bounded too."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, TokenBucket] = {}

    def wait(self, key: str) -> float:
        """0.0 if ``key`` may make a request now (the request is counted), else how many
        seconds until it may."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)


__all__ = ["RateLimiter", "TokenBucket"]
