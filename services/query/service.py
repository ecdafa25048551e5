"""How the query service mounts into a process: its routes, the engine they call, and
readiness checks for Redis and the vector index. It needs no Kafka. ``attune run
query`` and ``attune dev`` both mount it this way (services/app/bootstrap.py)."""

from __future__ import annotations

from redis.asyncio import Redis

from services.common.embedding import Embedder
from services.common.mount import ServiceMount
from services.common.settings import Settings
from services.common.userstore import DecayRates, UserModelKeys, UserModelReader
from services.common.vectorindex import VectorIndex
from services.query.config import QueryConfig
from services.query.direct import ROUTES
from services.query.engine import QueryEngine
from services.query.routes import query_router


def build_query_engine(
    settings: Settings, redis: Redis, index: VectorIndex, embedder: Embedder
) -> QueryEngine:
    reader = UserModelReader(
        redis,
        UserModelKeys(settings.redis_namespace),
        DecayRates.from_settings(settings),
        ranked_cache_s=settings.query_ranked_cache_s,
    )
    return QueryEngine(reader, index, embedder, QueryConfig.from_settings(settings))


def mount(
    settings: Settings, *, redis: Redis, index: VectorIndex, embedder: Embedder
) -> ServiceMount:
    engine = build_query_engine(settings, redis, index, embedder)
    return ServiceMount(
        name="query",
        http_routers=[query_router],
        http_routes=ROUTES,
        readiness_checks={"redis": redis.ping, "vector_index": index.count},
        app_state={"query_engine": engine},
        on_close=[engine.close],
    )


__all__ = ["build_query_engine", "mount"]
