"""Spans at the boundaries of Attune's stores and models, applied where a process builds
its dependencies (:func:`services.app.bootstrap.open_dependencies`), so that the code
that uses them (the consumers, the query engine) stays free of tracing:

- :func:`instrument_http_app`: a SERVER span per request (FastAPI instrumentation;
  /healthz, /readyz and /metrics are left out);
- :func:`traced_redis`: a CLIENT span per Redis command or pipeline, on this client only;
- :class:`TracedVectorIndex`: a CLIENT span per vector-index call (Qdrant Edge or server);
- :class:`TracedEmbedder`: an INTERNAL span per embedding call.

Each function returns its argument untouched when tracing is off: nothing is wrapped,
nothing costs. Code running under ``suppress_instrumentation()`` (the readiness checks)
makes no spans.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from services.common import telemetry
from services.common.embedding import Embedder, Vectors
from services.common.vectorindex import (
    Hit,
    ItemFilter,
    ItemWrite,
    Similarities,
    StoredItem,
    VectorIndex,
    VectorLike,
)

INSTRUMENTATION = "attune.stores"
EXCLUDED_URLS = "/healthz,/readyz,/metrics"


def instrument_http_app(app: FastAPI) -> FastAPI:
    """A SERVER span per request, named by route template (``POST /v1/events``)."""
    provider = telemetry.tracer_provider()
    if provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=provider,
            excluded_urls=EXCLUDED_URLS,
            exclude_spans=["receive", "send"],
        )
    return app


def _short_pipeline_name(span: trace.Span, instance: Any, response: Any) -> None:
    """The instrumentation names a pipeline's span after all its commands
    ("EVALSHA EVALSHA ..."); keep each command name once."""
    name = getattr(span, "name", None)
    if isinstance(name, str) and " " in name and span.is_recording():
        span.update_name("pipeline " + " ".join(dict.fromkeys(name.split())))


def traced_redis(client: Redis) -> Redis:
    """``client`` with a span per command and per pipeline (this client only)."""
    provider = telemetry.tracer_provider()
    if provider is not None:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor.instrument_client(
            client, tracer_provider=provider, response_hook=_short_pipeline_name
        )
    return client


@contextmanager
def _span(
    tracer: trace.Tracer, name: str, kind: SpanKind, attributes: dict[str, Any]
) -> Iterator[trace.Span | None]:
    if not is_instrumentation_enabled():
        yield None
        return
    with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
        yield span


class TracedVectorIndex:
    """A :class:`VectorIndex` whose calls are CLIENT spans ``vector_index.<call>``."""

    def __init__(self, inner: VectorIndex, tracer: trace.Tracer) -> None:
        self.inner = inner
        self.dimension = inner.dimension
        self._tracer = tracer
        self._system = type(inner).__name__

    def _span(self, call: str, **attributes: Any) -> Any:
        return _span(
            self._tracer,
            f"vector_index.{call}",
            SpanKind.CLIENT,
            {"db.system.name": "qdrant", "db.operation.name": call,
             "attune.vector_index": self._system, **attributes},
        )  # fmt: skip

    async def ensure_ready(self) -> None:
        with self._span("ensure_ready"):
            await self.inner.ensure_ready()

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        with self._span("apply", **{"attune.writes": len(writes)}):
            await self.inner.apply(writes)

    async def search(self, vector: VectorLike, item_filter: ItemFilter, limit: int) -> list[Hit]:
        with self._span("search", **{"attune.limit": limit}) as span:
            hits = await self.inner.search(vector, item_filter, limit)
            if span is not None:
                span.set_attribute("attune.hits", len(hits))
            return hits

    async def search_ids(
        self, vector: VectorLike, item_filter: ItemFilter, limit: int
    ) -> list[tuple[str, float]]:
        with self._span("search_ids", **{"attune.limit": limit}) as span:
            hits = await self.inner.search_ids(vector, item_filter, limit)
            if span is not None:
                span.set_attribute("attune.hits", len(hits))
            return hits

    async def score(
        self, vector: VectorLike, item_filter: ItemFilter, item_ids: Collection[str]
    ) -> dict[str, float]:
        with self._span("score", **{"attune.ids": len(item_ids)}):
            return await self.inner.score(vector, item_filter, item_ids)

    async def similarities(
        self, tenant: str, item_ids: Sequence[str], queries: Sequence[VectorLike]
    ) -> Similarities:
        with self._span(
            "similarities", **{"attune.ids": len(item_ids), "attune.queries": len(queries)}
        ):
            return await self.inner.similarities(tenant, item_ids, queries)

    async def retrieve(
        self, tenant: str, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredItem]:
        with self._span(
            "retrieve", **{"attune.ids": len(item_ids), "attune.with_vectors": with_vectors}
        ):
            return await self.inner.retrieve(tenant, item_ids, with_vectors=with_vectors)

    async def count(self, tenant: str | None = None) -> int:
        with self._span("count"):
            return await self.inner.count(tenant)

    def scroll(self, *, with_vectors: bool = True) -> AsyncIterator[StoredItem]:
        return self.inner.scroll(with_vectors=with_vectors)

    async def read_meta(self, key: str) -> dict[str, Any] | None:
        with self._span("read_meta", **{"attune.meta_key": key}):
            return await self.inner.read_meta(key)

    async def write_meta(self, key: str, value: dict[str, Any]) -> None:
        with self._span("write_meta", **{"attune.meta_key": key}):
            await self.inner.write_meta(key, value)

    async def read_metas(self, prefix: str) -> dict[str, dict[str, Any]]:
        with self._span("read_metas", **{"attune.meta_key": prefix}):
            return await self.inner.read_metas(prefix)

    async def write_metas(self, values: Mapping[str, dict[str, Any]]) -> None:
        with self._span("write_metas", **{"attune.meta_keys": len(values)}):
            await self.inner.write_metas(values)

    async def optimize(self) -> None:
        with self._span("optimize"):
            await self.inner.optimize()

    async def close(self) -> None:
        await self.inner.close()


def traced_vector_index(index: VectorIndex) -> VectorIndex:
    """``index`` with a span per call when tracing is on."""
    if not telemetry.tracing_enabled():
        return index
    return TracedVectorIndex(index, telemetry.tracer(INSTRUMENTATION))


class TracedEmbedder(Embedder):
    """An :class:`Embedder` (the same model and threads) whose calls are spans
    ``embedding.embed_documents`` and ``embedding.embed_query``."""

    def __init__(self, inner: Embedder, tracer: trace.Tracer) -> None:
        # No super().__init__: the model is the inner embedder's, already loaded.
        self.inner = inner
        self.model, self.model_name = inner.model, inner.model_name
        self.batch_size, self.dimension = inner.batch_size, inner.dimension
        self._tracer = tracer

    def _span(self, call: str, texts: int) -> Any:
        return _span(
            self._tracer,
            f"embedding.{call}",
            SpanKind.INTERNAL,
            {"attune.embedding.model": self.model_name, "attune.texts": texts},
        )

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        with self._span("embed_documents", len(texts)):
            return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> Vectors:
        with self._span("embed_query", 1):
            return await self.inner.embed_query(text)

    def _embed_now(self, texts: Sequence[str]) -> Vectors:
        return self.inner._embed_now(texts)

    def close(self) -> None:
        self.inner.close()


def traced_embedder(embedder: Embedder) -> Embedder:
    """``embedder`` with a span per call when tracing is on."""
    if not telemetry.tracing_enabled():
        return embedder
    return TracedEmbedder(embedder, telemetry.tracer(INSTRUMENTATION))


__all__ = [
    "TracedEmbedder",
    "TracedVectorIndex",
    "instrument_http_app",
    "traced_embedder",
    "traced_redis",
    "traced_vector_index",
]
