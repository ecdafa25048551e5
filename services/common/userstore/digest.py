"""The canonical digest of a user-model namespace (``attune state digest usermodel``)."""

from __future__ import annotations

import json
import math
from typing import Any

from redis.asyncio import Redis

from services.common.digest import Digest, number
from services.common.userstore.decay import DecayRates
from services.common.userstore.keys import UserModelKeys

# Decayed scores (trending, and popularity when it decays) are stored relative to a
# landmark that moves when they are rescaled; the digest writes them relative to this
# fixed time instead, in the log domain. A score below a 10^-12 share of the set's
# largest has decayed to nothing for any ranking, and how small it got first depends
# on the order the updates came in (it may have underflowed): it is written as 0.
REFERENCE_MS = 946_684_800_000  # 2000-01-01
NEGLIGIBLE = 1e-12
_BOOKKEEPING = ("seen", "outbox", "applied", "meta")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scored(members: Any) -> list[tuple[str, float]]:
    return [(_text(member), float(score)) for member, score in members]


async def digest_namespace(redis: Redis, keys: UserModelKeys, decay: DecayRates) -> Digest:
    digest = Digest()
    prefix = f"{keys.namespace}:"
    landmarks: dict[str, float] = {}  # "<tenant key>:trending" -> landmark
    decayed: list[tuple[str, list[tuple[str, float]]]] = []
    async for raw_key in redis.scan_iter(match=keys.pattern(), count=1_000):
        key = _text(raw_key)[len(prefix) :]
        if key == "watermarks" or key.rsplit(":", 1)[-1] in _BOOKKEEPING:
            if key.endswith(":meta"):
                tenant_key = key[: -len(":meta")]
                for ranked in ("trending", "popular"):
                    stored = await redis.hget(raw_key, f"{ranked}_landmark_ms")
                    if stored is not None:
                        landmarks[f"{tenant_key}:{ranked}"] = float(stored)
            continue
        kind = await redis.type(raw_key)
        if kind == b"hash":
            for name, value in (await redis.hgetall(raw_key)).items():
                field_name, text = _text(name), _text(value)
                if key.endswith(":state"):
                    if field_name.startswith("offset:"):
                        continue
                    if field_name == "traits":
                        text = json.dumps(json.loads(text), sort_keys=True)
                    else:
                        text = number(text)
                elif key.endswith(":tags"):
                    affinity, _, updated_ms = text.partition(":")
                    text = f"{number(affinity)}:{updated_ms}"
                else:
                    text = number(text)
                digest.add(key.rsplit(":", 1)[-1], key, field_name, text)
        elif kind == b"zset":
            members = _scored(await redis.zrange(raw_key, 0, -1, withscores=True))
            if key.endswith((":trending", ":popular")):
                decayed.append((key, members))
                continue
            kind_name = "co" if ":co:" in key else key.rsplit(":", 1)[-1]
            for member, score in members:
                digest.add(kind_name, key, member, number(score))
    for key, members in decayed:
        name = key.rsplit(":", 1)[-1]
        rates = {"trending": decay.trending_rate_per_ms}
        rate = rates.get(name, decay.popularity_rate_per_ms)
        if key not in landmarks:  # popularity that does not decay: plain sums
            for member, score in members:
                digest.add(name, key, member, number(score))
            continue
        shift = rate * (landmarks[key] - REFERENCE_MS)
        floor = max((score for _, score in members), default=0.0) * NEGLIGIBLE
        for member, score in members:
            value = number(math.log(score) + shift) if score > floor else "0"
            digest.add(name, key, member, value)
    return digest


__all__ = ["digest_namespace"]
