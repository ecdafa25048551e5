"""The user model folded under several configurations side by side.

A fold parameter is baked into what the user model stores: popularity is forward-decayed
as each event is folded, so its half-life cannot change per request as a weight does.
To choose it on validation with the weights, the evaluation folds the same events once
per candidate half-life. Each variant is its own consumer group on the events topic
(with its own broker connection), folding into its own Redis namespace, read by its own
:class:`QueryEngine`; the variants share the broker, Redis, the vector index and the
model, and are fed by the same produced events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker

from bench.relevance.phases import Phase
from services.app.bootstrap import Dependencies
from services.common.kafka import make_broker
from services.common.settings import Settings
from services.query import build_query_engine
from services.query.engine import QueryEngine


@dataclass
class FoldVariant:
    popularity_half_life_days: float
    settings: Settings
    engine: QueryEngine
    broker: KafkaBroker
    validation: Phase = field(default_factory=lambda: Phase("validation"))
    running: bool = True

    @property
    def label(self) -> str:
        days = self.popularity_half_life_days
        return "popularity not decayed" if not days else f"popularity half-life {days:g} d"

    def read_as_of(self, cutoff: int) -> None:
        """Decay what the engine reads to ``cutoff`` (unix seconds), as a live system
        asked at that moment would."""
        at = datetime.fromtimestamp(cutoff, UTC)
        self.engine.reader.clock = lambda: at

    async def stop(self) -> None:
        """Stop folding (the Redis namespace stays until the stack goes)."""
        if self.running:
            self.running = False
            await self.broker.stop()


def variant_settings(settings: Settings, popularity_half_life_days: float) -> Settings:
    """``settings`` with the half-life, in a namespace and consumer groups of its own."""
    tag = f"pop{popularity_half_life_days:g}"
    return settings.model_copy(
        update={
            "popularity_half_life_days": popularity_half_life_days,
            "redis_namespace": f"{settings.redis_namespace}-{tag}",
            "kafka_group_prefix": f"{settings.kafka_group_prefix}-{tag}",
        }
    )


@asynccontextmanager
async def fold_variants(
    deps: Dependencies, popularity_half_lives: Sequence[float]
) -> AsyncIterator[list[FoldVariant]]:
    """One running user-model consumer per half-life (duplicates once), stopped on exit."""
    from services.usermodel.subscriber import events_router

    if deps.redis is None or deps.vector_index is None or deps.embedder is None:
        raise ValueError("fold variants need Redis, the model and the vector index opened")
    async with AsyncExitStack() as stack:
        variants: list[FoldVariant] = []
        for days in dict.fromkeys(popularity_half_lives):
            settings = variant_settings(deps.settings, days)
            broker = make_broker(settings)
            broker.include_router(events_router(settings, deps.redis))
            engine = build_query_engine(settings, deps.redis, deps.vector_index, deps.embedder)
            variant = FoldVariant(days, settings, engine, broker)
            await broker.start()
            stack.push_async_callback(variant.stop)
            variants.append(variant)
        yield variants


__all__ = ["FoldVariant", "fold_variants", "variant_settings"]
