"""Embedder docs/s, Kafka to vector index, next to fastembed alone on the same texts.

- Raw limit: ``Embedder.embed_documents`` (fastembed, the service's own wrapper) on the
  first N MovieLens texts, in chunks of the consumer's batch size: once before the
  pipeline and once after it, averaged (a drifting machine load then weighs on both
  sides alike).

Both sides are warm: one untimed batch of other films goes through the raw embedder
and through the service before the N films (a model's first large batch pays for
allocating its buffers).
- Figure: the same N items produced to the content topic, then ``attune run embedder``
  consuming them into a Qdrant Edge folder of its own; docs/s from its first consumed
  batch until its /metrics count N documents embedded.

The raw pass also embeds the other films (or takes them from the vector cache): the
query figures need a vector for every film.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from bench.context import Context
from bench.results import Figure, Target
from bench.services import Sample, follow_consumer, metric, scrape, wait_for_metric
from bench.workloads import vectors_cache_key
from services.app.datasets import produce, rich_progress
from services.common.vectorindex import open_vector_index
from services.embedder import consumer_group

TARGET = Target("ratio_at_least", 0.9, ">= 0.9 x raw")
CONSUMED = "attune_consumer_messages_total"
EMBEDDED = "attune_embedder_docs_embedded_total"


def _cache_path(ctx: Context, texts: list[str]) -> Path:
    settings = ctx.settings
    key = vectors_cache_key(settings.embedding_model, settings.resolved_embedding_model_path, texts)
    return ctx.out / "cache" / f"movielens-vectors-{key}.npy"


async def _embed_chunks(
    ctx: Context, texts: list[str], batch: int, label: str
) -> tuple[np.ndarray, list[float]]:
    embedder = await ctx.embedder()
    parts, seconds = [], []
    with rich_progress(label, console=ctx.console) as progress:
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            began = time.perf_counter()
            parts.append(await embedder.embed_documents(chunk))
            seconds.append(time.perf_counter() - began)
            progress(start + len(chunk), len(texts))
    return np.concatenate(parts).astype(np.float32), seconds


async def ensure_vectors(ctx: Context, *, measured: np.ndarray | None = None) -> None:
    """A vector for every film in ``ctx.vectors``, its own embedding: the cache if it
    matches the rows just measured, else embedding the rest (quick runs too: the query
    figures search the films' real vectors)."""
    if ctx.vectors is not None:
        return
    texts = ctx.data.texts
    cache = _cache_path(ctx, texts)
    if cache.exists():
        cached = np.load(cache)
        rows = 0 if measured is None else len(measured)
        if cached.shape[0] == len(texts) and (
            measured is None or np.allclose(cached[:rows], measured, atol=1e-4)
        ):
            ctx.vectors = cached.astype(np.float32)
            ctx.say(f"  vectors of the other films from the cache {cache.name}")
            return
    done = measured if measured is not None else np.zeros((0, 0), dtype=np.float32)
    batch = ctx.settings.consumer_max_records
    rest, _ = await _embed_chunks(ctx, texts[len(done) :], batch, "embedding the other films")
    ctx.vectors = rest if not len(done) else np.concatenate([done, rest]).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, ctx.vectors)


async def run(ctx: Context) -> None:
    ctx.say("[bold]embedder[/bold]: Kafka -> fastembed -> Qdrant Edge vs fastembed alone")
    batch = ctx.settings.consumer_max_records
    count = min(ctx.sizes.embed_pipeline_items, len(ctx.data.items))
    texts = ctx.data.texts[:count]

    # Both sides warm: one untimed batch of other films through each first.
    warm_items = ctx.data.items[-batch:]
    warm = len(warm_items)
    await (await ctx.embedder()).embed_documents([i.text_to_embed() for i in warm_items])

    # Raw limit: the same texts, the same batch size, nothing else running.
    measured, seconds = await _embed_chunks(ctx, texts, batch, "fastembed alone")
    ctx.say(f"  fastembed alone: {count / sum(seconds):,.0f} docs/s over {count:,} texts")
    await ensure_vectors(ctx, measured=measured)

    # The pipeline: the real consumer, from its first batch of the N films to the last.
    settings = ctx.settings.model_copy(
        update={
            "kafka_group_prefix": f"bench-embed-{ctx.run_id}",
            "vector_index_path": ctx.work / "embedder-index",
        }
    )
    group = consumer_group(settings)

    def consumed(samples: list[Sample]) -> float:
        return metric(samples, CONSUMED, consumer=group) - warm

    def embedded(samples: list[Sample]) -> float:
        return metric(samples, EMBEDDED) - warm

    async with ctx.service("embedder", settings) as service:
        await produce(ctx.settings, warm_items)
        await wait_for_metric(service, embedded, at_least=0, deadline_s=warm / 10 + 120)
        before = await scrape(service)
        with rich_progress("attune run embedder", console=ctx.console) as progress:
            # Followed from before the first item is produced, so that the clock sees the
            # consumer take up its first batch (see ConsumerClock).
            following = asyncio.ensure_future(follow_consumer(
                service, started_metric=consumed, done_metric=embedded, target=count,
                deadline_s=count / 20 + 120, progress=progress,
            ))  # fmt: skip
            began = time.perf_counter()
            try:
                await produce(ctx.settings, ctx.data.items[:count])
                produce_s = time.perf_counter() - began
                consumer = await following
            finally:
                following.cancel()
        samples = await scrape(service)

    # The raw limit again, after: the pipeline ran between the two passes.
    _, again = await _embed_chunks(ctx, texts, batch, "fastembed alone, again")
    passes = [count / sum(seconds), count / sum(again)]
    raw_rate = sum(passes) / 2
    ctx.say(f"  fastembed alone, again: {passes[1]:,.0f} docs/s")
    rate = consumer.rate

    def delta(name: str, **labels: str) -> float:
        return metric(samples, name, **labels) - metric(before, name, **labels)

    embed_s = delta("attune_embedder_embed_duration_seconds_sum")
    batch_s = delta("attune_consumer_batch_duration_seconds_sum", consumer=group)
    batches = delta("attune_consumer_batch_size_count", consumer=group)
    index = open_vector_index(settings, measured.shape[1])
    await index.ensure_ready()
    indexed = await index.count(ctx.tenant) - warm
    await index.close()

    figure = ctx.results.add(
        Figure(
            key="embedder",
            title="embedder docs/s, Kafka to vector index",
            measured=rate,
            unit="docs/s",
            raw=raw_rate,
            raw_label="fastembed alone, same texts and batch size",
            target=TARGET,
            failures=consumer.failures,
            details={
                "documents": count,
                "documents_timed": consumer.counted,
                "batch_size": batch,
                "consumer_seconds": consumer.seconds,
                "timed_out": consumer.timed_out,
                "indexed": indexed,
                "batches": batches,
                "mean_batch": count / batches if batches else None,
                "embed_seconds_in_service": embed_s,
                "batch_seconds_in_service": batch_s,
                "share_embedding": embed_s / consumer.seconds if consumer.seconds else None,
                "raw_passes_docs_per_s": passes,
                "raw_chunk_seconds": [seconds, again],
                "produce_msgs_per_s": count / produce_s,
            },
        )
    )
    ctx.say(
        f"  attune run embedder: {rate or 0:,.0f} docs/s ({indexed:,} indexed); "
        f"{embed_s:.1f} s of {consumer.seconds:.1f} s embedding"
    )
    if figure.met is False and ctx.profiles:
        settings = settings.model_copy(
            update={
                "kafka_group_prefix": f"bench-embed-profile-{ctx.run_id}",
                "vector_index_path": ctx.work / "embedder-index-profile",
            }
        )
        profile_group = consumer_group(settings)
        async with ctx.service("embedder", settings) as service:
            await wait_for_metric(
                service,
                lambda s: metric(s, CONSUMED, consumer=profile_group),
                deadline_s=60,
            )
            await ctx.profile(figure, service, "attune run embedder consuming MovieLens items")


__all__ = ["ensure_vectors", "run"]
