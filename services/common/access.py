"""Who may call which API: write keys ingest, read keys query, each key names its tenant
and has its own rate limit; and whether a process may serve its APIs at all without keys.

Framework-free: :mod:`services.common.http` turns :class:`AccessDenied` into the error
shape and wires :class:`AccessControl` into the apps.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import Counter, Gauge
from pydantic import SecretStr

from services.common.ratelimit import RateLimiter
from services.common.settings import Settings, SettingsError

Access = Literal["write", "read"]

_KEY_SETTING: dict[Access, str] = {"write": "ATTUNE_WRITE_KEYS", "read": "ATTUNE_READ_KEYS"}
_API: dict[Access, str] = {"write": "ingest", "read": "query"}

THROTTLED = Counter(
    "attune_http_throttled",
    "Requests refused with 429: their API key was over ATTUNE_RATE_LIMIT_PER_S.",
    ["tenant", "access"],
)
RATE_LIMIT = Gauge(
    "attune_http_rate_limit",
    "The configured rate limit per API key: per_second (0: none) and burst.",
    ["setting"],
)


@dataclass(frozen=True)
class Grant:
    """What one key may do. ``name`` identifies the key (in rate limiting) without
    holding it."""

    tenant: str
    access: frozenset[Access]
    name: str


class AccessDenied(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after_s = retry_after_s


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The configured keys, looked up by their SHA-256 (no comparison on the key's
    bytes, so no timing to learn it from)."""

    def __init__(
        self,
        write_keys: Mapping[str, Sequence[SecretStr]],
        read_keys: Mapping[str, Sequence[SecretStr]],
    ) -> None:
        grants: dict[bytes, Grant] = {}
        sources: tuple[tuple[Access, Mapping[str, Sequence[SecretStr]]], ...] = (
            ("write", write_keys),
            ("read", read_keys),
        )
        for access, keys in sources:
            for tenant, tenant_keys in keys.items():
                for position, key in enumerate(tenant_keys, start=1):
                    digest = _digest(key.get_secret_value())
                    known = grants.get(digest)
                    name = known.name if known else f"{tenant}/{access}#{position}"
                    rights = (known.access if known else frozenset[Access]()) | {access}
                    grants[digest] = Grant(tenant, rights, name)
        self._grants = grants

    def lookup(self, presented: str) -> Grant | None:
        return self._grants.get(_digest(presented))


class AccessControl:
    """Authenticates a request's key for an API and applies the key's rate limit."""

    def __init__(self, settings: Settings, clock: Callable[[], float] | None = None) -> None:
        self.keys = KeyRing(settings.write_keys, settings.read_keys)
        rate, burst = settings.rate_limit_per_s, settings.rate_limit_burst
        self.limiter: RateLimiter | None = None
        if rate > 0:
            self.limiter = RateLimiter(rate, burst, clock or time.monotonic)
        RATE_LIMIT.labels("per_second").set(rate)
        RATE_LIMIT.labels("burst").set(burst)

    def authorize(self, presented: str | None, access: Access, claimed: str | None) -> str:
        """The tenant of a request presenting key ``presented`` to an API needing
        ``access``; ``claimed`` is the tenant the request names besides (a header), which
        must be the key's. Raises :class:`AccessDenied`."""
        if presented is None:
            raise AccessDenied(
                401,
                "unauthorized",
                f"a {access} key is required (Authorization: Bearer <key>, X-API-Key, or "
                "the write key as the basic-auth user)",
            )
        grant = self.keys.lookup(presented)
        if grant is None:
            raise AccessDenied(401, "unauthorized", "unknown API key")
        if access not in grant.access:
            held = "/".join(sorted(grant.access))
            raise AccessDenied(403, "forbidden", f"a {held} key cannot use the {_API[access]} API")
        if claimed is not None and claimed != grant.tenant:
            raise AccessDenied(
                403,
                "tenant_mismatch",
                f"the key is tenant {grant.tenant!r}'s, not {claimed[:64]!r}",
            )
        if self.limiter is not None:
            wait = self.limiter.wait(grant.name)
            if wait > 0:
                THROTTLED.labels(grant.tenant, access).inc()
                raise AccessDenied(
                    429,
                    "too_many_requests",
                    f"over the rate limit of this key ({self.limiter.rate:g}/s, burst "
                    f"{self.limiter.burst}); retry later",
                    retry_after_s=max(1, math.ceil(wait)),
                )
        return grant.tenant


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def access_problem(settings: Settings, apis: Collection[Access]) -> str | None:
    """Why a process serving ``apis`` must not start with ``settings``, or None: keys
    are set but none for one of its APIs (it would refuse every request), or it would
    serve an API without keys on an address other than loopback and was not told
    ATTUNE_ALLOW_OPEN=true."""
    if settings.keys_required:
        for access in sorted(apis):
            if not (settings.write_keys if access == "write" else settings.read_keys):
                return (
                    f"{_KEY_SETTING[access]} is empty while other keys are set: the "
                    f"{_API[access]} API would refuse every request; set {_KEY_SETTING[access]}"
                )
        return None
    if not apis or settings.allow_open or is_loopback(settings.http_host):
        return None
    names = " and ".join(_API[a] for a in sorted(apis, reverse=True))
    variables = " and ".join(_KEY_SETTING[a] for a in sorted(apis, reverse=True))
    return (
        f"refusing to serve the {names} API without keys on {settings.http_host} (not "
        f"loopback): set {variables}, or ATTUNE_HTTP_HOST=127.0.0.1, or "
        "ATTUNE_ALLOW_OPEN=true to serve it open on purpose (e.g. behind a proxy that "
        "authenticates)"
    )


def check_access(settings: Settings, apis: Collection[Access]) -> None:
    """Raise SettingsError with :func:`access_problem`'s reason, if any."""
    problem = access_problem(settings, apis)
    if problem is not None:
        raise SettingsError(problem)


__all__ = [
    "RATE_LIMIT",
    "THROTTLED",
    "Access",
    "AccessControl",
    "AccessDenied",
    "Grant",
    "KeyRing",
    "access_problem",
    "check_access",
    "is_loopback",
]
