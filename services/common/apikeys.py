"""What makes an API key acceptable, checked when the settings are read: a key that
is short, a placeholder or ambiguous stops the start instead of guarding an API."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pydantic import SecretStr

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MIN_KEY_LENGTH = 16
MIN_DISTINCT_CHARACTERS = 5
# Compared with the key lower-cased and stripped of everything but letters and digits,
# so that CHANGE-ME, change_me and ChangeMe123 are all caught.
PLACEHOLDER_MARKERS = (
    "changeme",
    "replaceme",
    "placeholder",
    "yourkey",
    "yourapikey",
    "yourwritekey",
    "yourreadkey",
    "example",
    "dummy",
    "password",
    "secret",
)


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be an API key, or None. The answer never quotes the key."""
    if len(key) < MIN_KEY_LENGTH:
        return f"shorter than {MIN_KEY_LENGTH} characters"
    if any(char.isspace() for char in key) or ":" in key:
        return "holds whitespace or ':' (it could not be sent as a bearer or basic-auth user)"
    folded = re.sub(r"[^a-z0-9]", "", key.lower())
    marker = next((m for m in PLACEHOLDER_MARKERS if m in folded), None)
    if marker is not None:
        return f"looks like a placeholder (contains {marker!r}): generate a random key"
    if len(set(key)) < MIN_DISTINCT_CHARACTERS:
        return f"fewer than {MIN_DISTINCT_CHARACTERS} distinct characters: generate a random key"
    return None


def check_keys(keys: Mapping[str, Sequence[SecretStr]]) -> None:
    """Raise ValueError naming the tenant (and the key's position, never the key) at
    fault: a tenant name outside the tenant pattern, no key, a bad or repeated key."""
    seen: dict[str, str] = {}
    for tenant, tenant_keys in keys.items():
        if not TENANT_PATTERN.match(tenant):
            raise ValueError(f"tenant {tenant!r} does not match {TENANT_PATTERN.pattern}")
        if not tenant_keys:
            raise ValueError(f"tenant {tenant!r} has no key")
        for position, key in enumerate(tenant_keys, start=1):
            problem = key_problem(key.get_secret_value())
            if problem is not None:
                raise ValueError(f"tenant {tenant!r}, key {position}: {problem}")
            owner = seen.setdefault(key.get_secret_value(), tenant)
            if owner != tenant:
                raise ValueError(f"tenants {owner!r} and {tenant!r} share a key")


def shared_across_tenants(
    write_keys: Mapping[str, Sequence[SecretStr]], read_keys: Mapping[str, Sequence[SecretStr]]
) -> tuple[str, str] | None:
    """A (write tenant, read tenant) pair whose keys overlap across different tenants: a
    key must name one tenant. The same key in both maps for one tenant reads and writes."""
    writers = {k.get_secret_value(): t for t, keys in write_keys.items() for k in keys}
    for tenant, keys in read_keys.items():
        for key in keys:
            owner = writers.get(key.get_secret_value())
            if owner is not None and owner != tenant:
                return owner, tenant
    return None


__all__ = [
    "MIN_KEY_LENGTH",
    "PLACEHOLDER_MARKERS",
    "TENANT_PATTERN",
    "check_keys",
    "key_problem",
    "shared_across_tenants",
]
