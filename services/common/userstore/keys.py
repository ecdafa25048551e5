"""Where the user model lives in Redis.

Every key of one user shares the hash tag ``{tenant/user}`` and every tenant-level
key the tag ``{tenant}``, so that each fold script touches one Redis Cluster slot.
The namespace prefix lets a replay build a fresh copy beside the live one.

    {ns}:u:{tenant/user}:state      hash   events, first_ms, last_ms, rating_sum,
                                           rating_count, traits, offset:<partition>
    {ns}:u:{tenant/user}:recent     zset   item -> time of the latest interaction (ms)
    {ns}:u:{tenant/user}:strength   hash   item -> summed strength (recent items only)
    {ns}:u:{tenant/user}:tags       hash   tag -> "affinity:time" (decays with time)
    {ns}:u:{tenant/user}:events     hash   event name -> count
    {ns}:u:{tenant/user}:seen       zset   messageId -> arrival (deduplication window)
    {ns}:u:{tenant/user}:outbox     list   tenant updates not yet applied
    {ns}:t:{tenant}:applied         hash   "user|partition" -> last offset applied, while
                                           the user's outbox is not empty
    {ns}:t:{tenant}:trending        zset   item -> forward-decayed popularity
    {ns}:t:{tenant}:meta            hash   trending_landmark_ms, popular_landmark_ms
    {ns}:t:{tenant}:popular         zset   item -> positive strength, forward-decayed
                                           (popularity_half_life_days; 0: all time)
    {ns}:t:{tenant}:co:<item>       zset   other item -> times engaged together
    {ns}:watermarks                 hash   partition -> last offset applied (all users)

Tenant-level aggregates share the tenant's slot (not one slot per item) so that one
script applies a batch's updates atomically: per-item slots would cost a script call
per item touched, several per event. A tenant's aggregates then live on one node;
the per-user state, the bulk of the memory, spreads over the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserKeys:
    state: str
    recent: str
    strength: str
    tags: str
    events: str
    seen: str
    outbox: str

    def for_fold(self) -> list[str]:
        """In the order fold_user.lua takes them."""
        return [
            self.state, self.recent, self.strength, self.tags, self.events, self.seen,
            self.outbox,
        ]  # fmt: skip


@dataclass(frozen=True)
class TenantKeys:
    applied: str
    trending: str
    meta: str
    popular: str
    co_prefix: str

    def co(self, item_id: str) -> str:
        return self.co_prefix + item_id


@dataclass(frozen=True)
class UserModelKeys:
    namespace: str = "attune"

    def user(self, tenant: str, user_id: str) -> UserKeys:
        base = f"{self.namespace}:u:{{{tenant}/{user_id}}}:"
        return UserKeys(
            state=base + "state",
            recent=base + "recent",
            strength=base + "strength",
            tags=base + "tags",
            events=base + "events",
            seen=base + "seen",
            outbox=base + "outbox",
        )

    def tenant(self, tenant: str) -> TenantKeys:
        base = f"{self.namespace}:t:{{{tenant}}}:"
        return TenantKeys(
            applied=base + "applied",
            trending=base + "trending",
            meta=base + "meta",
            popular=base + "popular",
            co_prefix=base + "co:",
        )

    @property
    def watermarks(self) -> str:
        return f"{self.namespace}:watermarks"

    def pattern(self) -> str:
        """Every key of this namespace (for SCAN)."""
        return f"{self.namespace}:*"


__all__ = ["TenantKeys", "UserKeys", "UserModelKeys"]
