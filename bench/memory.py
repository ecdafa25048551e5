"""Memory of the user model in Redis, per (user, recent item), and under the bounds.

After the live fold of the MovieLens ratings: ``MEMORY USAGE key SAMPLES 0`` (every
element counted) of every per-user key of the MovieLens tenant, divided by the number
of (user, recent item) pairs (the sum of the users' ``recent`` sorted-set sizes). The
breakdown by key kind is the memory profile; the tenant-level keys (trending,
popularity, co-occurrence) are reported beside it, not in the figure.

The bounds (``memory_bounds``): a hostile user folded with the settings' caps (10,000
events, each a new event name, a new tag and an unknown item, every string as long as
the contract lets it be; 10,000 traits; messageIds of the longest kind), measured the
same way: the most one user can take. ``python -m bench.memory`` measures only this, on
its own embedded Redis, and writes docs/benchmarks/memory-bounds.json.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.results import Figure, Target
from services.common.redis import make_redis
from services.common.settings import Settings

TARGET = Target("at_most", 400, "<= 400 bytes per (user, recent item)")
BOUNDS_TARGET = Target("at_most", 1_000_000, "<= 1 MB per user, hostile, at the caps")
BOUNDS_FILE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "memory-bounds.json"
HOSTILE_EVENTS = 10_000
HOSTILE_TRAITS = 10_000


def key_kind(key: str) -> str:
    """``attune:u:{t/u}:recent`` -> ``recent``; ``attune:t:{t}:co:42`` -> ``co``."""
    tail = key.rsplit("}:", 1)[-1]
    return tail.split(":", 1)[0]


async def _usage(redis: object, keys: list[bytes]) -> list[int]:
    from redis.asyncio import Redis

    assert isinstance(redis, Redis)
    sizes: list[int] = []
    for start in range(0, len(keys), 1_000):
        pipe = redis.pipeline(transaction=False)
        for key in keys[start : start + 1_000]:
            pipe.memory_usage(key, samples=0)
        sizes.extend(int(size or 0) for size in await pipe.execute())
    return sizes


def _padded(prefix: str, n: int, length: int) -> str:
    """A distinct string of exactly ``length`` characters."""
    head = f"{prefix}{n}-"
    return head + "x" * (length - len(head))


def hostile_events(tenant: str, user: str, start: datetime) -> list[Any]:
    """The envelopes of the hostile user, one second of arrival apart."""
    from schemas.events import BehaviourEvent
    from schemas.topics import EVENTS
    from services.common.records import Envelope
    from services.usermodel.fold import MAX_TAG_CHARS, MAX_TRAIT_NAME_CHARS

    payloads: list[dict[str, Any]] = []
    per_identify = HOSTILE_TRAITS // 10
    for n in range(HOSTILE_EVENTS):
        payloads.append({
            "tenant": tenant, "event": _padded("event-", n, 200), "userId": user,
            "messageId": _padded("m-", n, 256), "timestamp": start + timedelta(seconds=n),
            "properties": {"item_id": _padded("item-", n, 256),
                           "tags": [_padded("tag-", n, MAX_TAG_CHARS)]},
        })  # fmt: skip
        if n % (HOSTILE_EVENTS // 10) == 0:
            first = n // (HOSTILE_EVENTS // 10) * per_identify
            traits = {
                _padded("trait-", first + k, MAX_TRAIT_NAME_CHARS): "v" * 1_000
                for k in range(per_identify)
            }
            payloads.append({
                "tenant": tenant, "type": "identify", "userId": user,
                "messageId": _padded("id-", n, 256), "timestamp": start + timedelta(seconds=n),
                "traits": traits,
            })  # fmt: skip
    start_ms = int(start.timestamp() * 1000)
    return [
        Envelope(
            message=BehaviourEvent.model_validate(p),
            topic=EVENTS.name,
            partition=0,
            offset=offset,
            key=None,
            timestamp_ms=start_ms + offset * 1_000,
        )
        for offset, p in enumerate(payloads)
    ]


async def measure_bounds(settings: Settings, namespace: str) -> dict[str, Any]:
    """Fold the hostile user into ``namespace`` (then delete it); the bytes it takes."""
    from services.common.userstore.keys import UserModelKeys
    from services.common.userstore.namespace import Namespaces
    from services.usermodel.fold import FoldConfig, UserModelFolder

    config = FoldConfig.from_settings(settings)
    keys = UserModelKeys(namespace)
    tenant, user = "hostile", "eve"
    events = hostile_events(tenant, user, datetime.now(UTC) - timedelta(hours=3))
    redis = make_redis(settings)
    try:
        folder = UserModelFolder(redis, config)
        began = time.monotonic()
        for first in range(0, len(events), settings.consumer_max_records):
            await folder.fold(events[first : first + settings.consumer_max_records], keys)
        fold_s = time.monotonic() - began
        user_keys = [k async for k in redis.scan_iter(match=f"{namespace}:u:*", count=1_000)]
        tenant_keys = [k async for k in redis.scan_iter(match=f"{namespace}:t:*", count=1_000)]
        user_sizes = await _usage(redis, user_keys)
        tenant_sizes = await _usage(redis, tenant_keys)
        entries: Counter[str] = Counter()
        user_by_kind: dict[str, dict[str, int]] = {}
        for key, size in zip(user_keys, user_sizes, strict=True):
            kind = key_kind(key.decode())
            user_by_kind[kind] = {"bytes": size, "entries": await _entries(redis, key)}
        tenant_bytes: Counter[str] = Counter()
        for key, size in zip(tenant_keys, tenant_sizes, strict=True):
            kind = key_kind(key.decode())
            tenant_bytes[kind] += size
            entries[kind] += await _entries(redis, key)
        await Namespaces(redis, namespace + ".unused").drop(namespace)
    finally:
        await redis.aclose()
    per_entry = {k: tenant_bytes[k] / entries[k] for k in tenant_bytes if entries[k]}
    at_caps = {
        "trending": config.max_ranked_items,
        "popular": config.max_ranked_items,
        "co": config.max_ranked_items * config.max_cooccurring,
    }
    return {
        "caps": {
            "recent_items_limit": config.recent_items_limit,
            "max_event_names": config.max_event_names,
            "max_tags_per_user": config.max_tags_per_user,
            "max_traits": config.max_traits,
            "dedupe_max_ids": config.dedupe_max_ids,
            "dedupe_window_hours": config.dedupe_window_hours,
            "max_ranked_items": config.max_ranked_items,
            "max_cooccurring": config.max_cooccurring,
        },
        "hostile_user": {
            "events": len(events),
            "fold_s": round(fold_s, 2),
            "bytes": sum(user_sizes),
            "by_key": dict(sorted(user_by_kind.items())),
        },
        "tenant_after_hostile_user": {
            "bytes": sum(tenant_sizes),
            "bytes_by_kind": dict(tenant_bytes.most_common()),
            "entries_by_kind": dict(entries.most_common()),
            "bytes_per_entry": {k: round(v, 1) for k, v in per_entry.items()},
        },
        "tenant_at_caps_bytes": {
            kind: round(per_entry[kind] * n) for kind, n in at_caps.items() if kind in per_entry
        },
    }


async def _entries(redis: Any, key: bytes) -> int:
    kind = (await redis.type(key)).decode()
    counts = {"zset": redis.zcard, "hash": redis.hlen, "list": redis.llen}
    return int(await counts[kind](key)) if kind in counts else 1


async def run_bounds(ctx: Context) -> None:
    ctx.say("[bold]memory bounds[/bold]: a hostile user folded with the caps")
    measured = await measure_bounds(ctx.settings, f"bounds-{ctx.run_id}")
    user = measured["hostile_user"]
    ctx.results.add(
        Figure(
            key="memory_bounds", title="memory of one hostile user at the caps",
            measured=user["bytes"], unit="B", target=BOUNDS_TARGET, details=measured,
        )
    )  # fmt: skip
    ctx.say(f"  {user['bytes']:,} B for a user of {user['events']:,} hostile events")


async def measure_alone() -> dict[str, Any]:
    """Measure the bounds alone, on an embedded stack of their own."""
    from services.app.embedded import EmbeddedStack

    with tempfile.TemporaryDirectory(prefix="attune-bounds-") as folder:
        async with EmbeddedStack(Path(folder) / "stack") as stack:
            settings = stack.settings(Settings())
            measured = await measure_bounds(settings, "bounds")
            redis = make_redis(settings)
            try:
                version = (await redis.info("server")).get("redis_version")
            finally:
                await redis.aclose()
    return {
        "command": "python -m bench.memory",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "redis_server": version,
        "method": "MEMORY USAGE key SAMPLES 0 of every key after folding the hostile user "
        "with the default settings (bench/memory.py, measure_bounds); tenant_at_caps_bytes: "
        "the measured bytes per entry times the entries the tenant caps allow.",
        **measured,
    }


def main(out: Path) -> None:
    report = asyncio.run(measure_alone())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["hostile_user"], indent=1))
    print(f"written: {out}")


async def run(ctx: Context) -> None:
    ctx.say("[bold]memory[/bold]: Redis MEMORY USAGE of the user model")
    namespace, tenant = ctx.settings.redis_namespace, ctx.tenant
    user_pattern = f"{namespace}:u:{{{tenant}/*"
    tenant_pattern = f"{namespace}:t:{{{tenant}}}:*"
    redis = make_redis(ctx.settings)
    try:
        user_keys = [k async for k in redis.scan_iter(match=user_pattern, count=2_000)]
        tenant_keys = [k async for k in redis.scan_iter(match=tenant_pattern, count=2_000)]
        user_sizes = await _usage(redis, user_keys)
        tenant_sizes = await _usage(redis, tenant_keys)
        by_kind: Counter[str] = Counter()
        for key, size in zip(user_keys, user_sizes, strict=True):
            by_kind[key_kind(key.decode())] += size
        tenant_by_kind: Counter[str] = Counter()
        for key, size in zip(tenant_keys, tenant_sizes, strict=True):
            tenant_by_kind[key_kind(key.decode())] += size
        recent = [k for k in user_keys if key_kind(k.decode()) == "recent"]
        pipe = redis.pipeline(transaction=False)
        for key in recent:
            pipe.zcard(key)
        pairs = sum(int(n) for n in await pipe.execute())
        info = await redis.info("memory")
    finally:
        await redis.aclose()

    users = len(recent)
    total = sum(user_sizes)
    per_pair = total / pairs if pairs else None
    per_kind = {kind: size / pairs for kind, size in by_kind.most_common()} if pairs else {}
    figure = ctx.results.add(
        Figure(
            key="memory",
            title="memory of the user model in Redis",
            measured=per_pair,
            unit="B",
            target=TARGET,
            details={
                "users": users,
                "pairs": pairs,
                "recent_per_user": pairs / users if users else None,
                "user_keys": len(user_keys),
                "user_bytes": total,
                "bytes_per_pair_by_kind": per_kind,
                "tenant_bytes_by_kind": dict(tenant_by_kind.most_common()),
                "tenant_bytes_per_pair": sum(tenant_sizes) / pairs if pairs else None,
                "redis_used_memory": info.get("used_memory"),
            },
        )
    )
    if per_pair is not None:
        top = ", ".join(f"{k} {v / pairs:.0f} B" for k, v in by_kind.most_common(4))
        ctx.say(f"  {per_pair:,.0f} B per (user, recent item) over {users} users: {top}")
    if figure.met is False:
        figure.profile = {
            "kind": "memory breakdown",
            "top_self": [[k, round(100 * v / total, 1)] for k, v in by_kind.most_common()],
        }


__all__ = ["key_kind", "measure_bounds", "run", "run_bounds"]


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else BOUNDS_FILE)
