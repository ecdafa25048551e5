"""Memory of the user model in Redis, per (user, recent item).

After the live fold of the MovieLens ratings: ``MEMORY USAGE key SAMPLES 0`` (every
element counted) of every per-user key of the MovieLens tenant, divided by the number
of (user, recent item) pairs (the sum of the users' ``recent`` sorted-set sizes). The
breakdown by key kind is the memory profile; the tenant-level keys (trending,
popularity, co-occurrence) are reported beside it, not in the figure.
"""

from __future__ import annotations

from collections import Counter

from bench.context import Context
from bench.results import Figure, Target
from services.common.redis import make_redis

TARGET = Target("at_most", 400, "<= 400 bytes per (user, recent item)")


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


__all__ = ["key_kind", "run"]
