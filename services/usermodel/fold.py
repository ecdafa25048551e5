"""Fold behaviour events into the per-user model and the tenant's aggregates in Redis.

Per batch, three round trips:
1. per user, ``fold_user.lua`` applies the user's events atomically (skipping what the
   user's state says is already applied) and returns the user's outbox of tenant
   updates not yet confirmed;
2. per tenant, ``fold_tenant.lua`` applies those updates (skipping offsets already
   applied for their partition);
3. the applied outboxes are cleared.
A crash between any two steps is repaired by the redelivery: step 1 skips, returns
the outbox again, step 2 skips what it already applied (it keeps, per user and
partition, the last offset applied). Each script touches one Redis Cluster slot.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis

from schemas.events import BehaviourEvent
from services.common.consumer import Envelope
from services.common.settings import Settings
from services.usermodel.keys import UserModelKeys

MAX_TAGS_PER_EVENT = 32
_DAY_MS = 86_400_000


def _script(name: str) -> str:
    return files("services.usermodel").joinpath("scripts", name).read_text()


@dataclass(frozen=True)
class FoldConfig:
    event_weights: Mapping[str, float]
    default_event_weight: float = 1.0
    rating_weight: float = 2.0
    rating_prior_mean: float = 3.0
    rating_prior_count: float = 2.0
    recent_items_limit: int = 200
    tag_half_life_days: float = 30.0
    trending_half_life_days: float = 7.0
    cooccurrence_window: int = 10
    dedupe_window: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> FoldConfig:
        return cls(
            event_weights=dict(settings.event_weights),
            default_event_weight=settings.default_event_weight,
            rating_weight=settings.rating_weight,
            rating_prior_mean=settings.rating_prior_mean,
            rating_prior_count=settings.rating_prior_count,
            recent_items_limit=settings.recent_items_limit,
            tag_half_life_days=settings.tag_half_life_days,
            trending_half_life_days=settings.trending_half_life_days,
            cooccurrence_window=settings.cooccurrence_window,
        )

    @property
    def trending_rate_per_ms(self) -> float:
        return math.log(2) / (self.trending_half_life_days * _DAY_MS)

    def user_script_config(self) -> str:
        return json.dumps(
            {
                "rw": self.rating_weight,
                "pm": self.rating_prior_mean,
                "pc": self.rating_prior_count,
                "rl": self.recent_items_limit,
                "hl": self.tag_half_life_days * _DAY_MS,
                "dw": self.dedupe_window,
                "cw": self.cooccurrence_window,
            }
        )

    def weight_of(self, event_name: str) -> float:
        return self.event_weights.get(event_name, self.default_event_weight)


def event_name(event: BehaviourEvent) -> str:
    """The name an event is counted and weighted under: the track event, else its type."""
    return event.event if event.type == "track" and event.event else event.type


def event_tags(event: BehaviourEvent) -> list[str]:
    """Tags the event carries: ``properties.tags`` (list) and ``properties.category``."""
    extra = event.properties.model_extra or {}
    found: list[str] = []
    tags = extra.get("tags")
    if isinstance(tags, list):
        found.extend(str(tag).strip() for tag in tags if isinstance(tag, str | int))
    category = extra.get("category")
    if isinstance(category, str):
        found.append(category.strip())
    return list(dict.fromkeys(tag for tag in found if tag))[:MAX_TAGS_PER_EVENT]


def identify_traits(event: BehaviourEvent) -> dict[str, Any]:
    """Traits of an identify call: top-level (Segment) or in context.traits (RudderStack)."""
    if event.type != "identify":
        return {}
    in_context = event.context.get("traits")
    return {**(in_context if isinstance(in_context, dict) else {}), **event.traits}


def fold_input(envelope: Envelope[BehaviourEvent], config: FoldConfig) -> dict[str, Any]:
    """One event as fold_user.lua reads it (JSON false, never null, for absent values)."""
    event = envelope.message
    name = event_name(event)
    rating = event.properties.rating
    return {
        "p": envelope.partition_id,
        "o": envelope.offset,
        "id": event.message_id,
        "t": int(event.timestamp.timestamp() * 1000),
        "e": name,
        "it": event.properties.item_id or False,
        "w": config.weight_of(name) if rating is None else False,
        "r": rating if rating is not None else False,
        "tg": event_tags(event),
        "tr": identify_traits(event) or False,
    }


@dataclass
class FoldStats:
    events: int = 0
    users: int = 0
    tenant_updates: int = 0


class UserModelFolder:
    """Applies batches of decoded events to the Redis namespace ``keys`` names."""

    def __init__(self, redis: Redis, config: FoldConfig) -> None:
        self.redis = redis
        self.config = config
        self._fold_user = redis.register_script(_script("fold_user.lua"))
        self._fold_tenant = redis.register_script(_script("fold_tenant.lua"))

    async def fold(
        self, envelopes: Sequence[Envelope[BehaviourEvent]], keys: UserModelKeys
    ) -> FoldStats:
        by_user: dict[tuple[str, str], list[Envelope[BehaviourEvent]]] = defaultdict(list)
        for envelope in sorted(envelopes, key=lambda e: (e.partition_id, e.offset)):
            by_user[(envelope.message.tenant, envelope.message.user_key)].append(envelope)
        if not by_user:
            return FoldStats()

        user_config = self.config.user_script_config()
        pipe = self.redis.pipeline(transaction=False)
        for (tenant, user), events in by_user.items():
            payload = json.dumps([fold_input(e, self.config) for e in events])
            await self._fold_user(
                keys=keys.user(tenant, user).for_fold(),
                args=[user_config, payload],
                client=pipe,
            )
        outboxes = await pipe.execute()

        updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        users_with_updates: list[tuple[str, str]] = []
        for (tenant, user), outbox in zip(by_user, outboxes, strict=True):
            if outbox:
                users_with_updates.append((tenant, user))
                updates[tenant].extend({**json.loads(entry), "u": user} for entry in outbox)

        applied = 0
        if updates:
            pipe = self.redis.pipeline(transaction=False)
            for tenant, tenant_updates in updates.items():
                await self._apply_tenant_updates(pipe, keys, tenant, tenant_updates)
            applied = sum(await pipe.execute())
            pipe = self.redis.pipeline(transaction=False)
            for tenant, user in users_with_updates:
                pipe.delete(keys.user(tenant, user).outbox)
            await pipe.execute()
        return FoldStats(events=len(envelopes), users=len(by_user), tenant_updates=applied)

    async def _apply_tenant_updates(
        self,
        pipe: Any,
        namespace: UserModelKeys,
        tenant: str,
        tenant_updates: list[dict[str, Any]],
    ) -> None:
        keys = namespace.tenant(tenant)
        tenant_updates.sort(key=lambda u: (u["p"], u["o"]))
        co_items: dict[str, int] = {}
        for update in tenant_updates:
            # cjson encodes an empty Lua table as {}; it means no pairs.
            update["co"] = update["co"] if isinstance(update["co"], list) else []
            for item in (update["it"], *update["co"]):
                co_items.setdefault(item, len(co_items) + 5)  # KEYS 1-4 are fixed
        script_keys = [keys.applied, keys.trending, keys.meta, keys.popular]
        script_keys.extend(keys.co(item) for item in co_items)
        await self._fold_tenant(
            keys=script_keys,
            args=[
                json.dumps({"lam": self.config.trending_rate_per_ms}),
                json.dumps({"updates": tenant_updates, "keys": co_items}),
            ],
            client=pipe,
        )


__all__ = ["FoldConfig", "FoldStats", "UserModelFolder", "event_name", "event_tags", "fold_input"]
