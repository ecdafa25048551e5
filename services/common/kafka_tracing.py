"""W3C trace context across the Kafka hop, as a FastStream broker middleware.

Publishing: a PRODUCER span ``<topic> publish`` (a child of whatever is current, e.g.
ingest's HTTP request) whose context goes into the message's headers (``traceparent``,
and ``tracestate`` / ``baggage`` where set: the propagators of ``OTEL_PROPAGATORS``).
Without ``no_confirm`` the span covers the broker's acknowledgement; with it (ingest
hands every message over first and then waits for all the acks) the span ends when
that message's acknowledgement arrives.

Consuming a batch: one CONSUMER span ``<topic> process`` around the handler, so that
every store write of the batch is under it. Its parent is the producer span of the
first message that carries a sampled trace context, so a message's trace goes on
through the consumer into the store writes; it *links* to the producer span of every
message of the batch (deduplicated). Every other trace that has messages in the batch
gets a short ``<topic> process`` span of its own, under its first message's producer
span, linking to the batch span: each event's trace reaches the consumer, and the link
leads to the store writes.

FastStream's own ``KafkaTelemetryMiddleware`` starts a new trace for every batch (links
only), which cuts the ingest trace at the topic; hence this one. It is only added to a
broker when tracing is on (:func:`services.common.kafka.make_broker`): with tracing off
no message pays for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from faststream import BaseMiddleware, ContextRepo
from faststream.message import StreamMessage
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

INSTRUMENTATION = "attune.kafka"
MAX_LINKS = 128  # the SDK's default span link limit; more would be dropped anyway

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION = "messaging.operation.type"
BATCH_COUNT = "messaging.batch.message_count"
KEY = "messaging.kafka.message.key"
PARTITION = "messaging.destination.partition.id"


def _text(key: Any) -> str | None:
    if key is None:
        return None
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return str(key)


class ProducerContexts:
    """The trace contexts a batch's messages carry: the parent for the batch span and the
    span contexts to link to, in batch order, without repeats."""

    def __init__(self, batch_headers: Sequence[Mapping[str, Any]]) -> None:
        self.parent: otel_context.Context | None = None
        self.links: list[SpanContext] = []
        self.first_of_trace: dict[int, tuple[otel_context.Context, int]] = {}
        seen: set[tuple[int, int]] = set()
        fallback: otel_context.Context | None = None
        for headers in batch_headers:
            if "traceparent" not in headers:
                continue
            extracted = propagate.extract(headers)
            span_context = trace.get_current_span(extracted).get_span_context()
            if not span_context.is_valid:
                continue
            if not span_context.trace_flags.sampled:
                fallback = fallback or extracted
                continue
            if self.parent is None:
                self.parent = extracted
            first, count = self.first_of_trace.get(span_context.trace_id, (extracted, 0))
            self.first_of_trace[span_context.trace_id] = (first, count + 1)
            ids = (span_context.trace_id, span_context.span_id)
            if ids not in seen and len(self.links) < MAX_LINKS:
                seen.add(ids)
                self.links.append(span_context)
        if self.parent is None:
            # Only unsampled contexts: keep the producer's decision (the sampler follows
            # the parent). No context at all: the batch starts a trace of its own.
            self.parent = fallback


class KafkaTracing:
    """The middleware factory FastStream calls per message and per publish."""

    def __init__(self, provider: TracerProvider) -> None:
        self.tracer = provider.get_tracer(INSTRUMENTATION)

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> BaseMiddleware:
        return _KafkaTracingScope(msg, context=context, tracer=self.tracer)


class _KafkaTracingScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: ContextRepo, tracer: trace.Tracer) -> None:
        super().__init__(msg, context=context)
        self.tracer = tracer

    async def publish_scope(self, call_next: Callable[[Any], Awaitable[Any]], cmd: Any) -> Any:
        topic = str(cmd.destination)
        attributes: dict[str, Any] = {SYSTEM: "kafka", DESTINATION: topic, OPERATION: "send"}
        if (key := _text(getattr(cmd, "key", None))) is not None:
            attributes[KEY] = key
        if (count := len(getattr(cmd, "batch_bodies", ()))) > 1:
            attributes[BATCH_COUNT] = count
        span = self.tracer.start_span(
            f"{topic} publish", kind=SpanKind.PRODUCER, attributes=attributes
        )
        if cmd.headers is None:
            cmd.headers = {}
        propagate.inject(cmd.headers, context=trace.set_span_in_context(span))
        try:
            result = await call_next(cmd)
        except BaseException as error:
            _fail(span, error)
            span.end()
            raise
        if isinstance(result, asyncio.Future) and not result.done():
            result.add_done_callback(lambda ack: _end_on_ack(span, ack))
        else:
            span.end()
        return result

    async def consume_scope(
        self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        raw = msg.raw_message
        records = raw if isinstance(raw, tuple | list) else (raw,)
        if not records:
            return await call_next(msg)
        topic = str(records[0].topic)
        contexts = ProducerContexts(msg.batch_headers or [msg.headers])
        attributes: dict[str, Any] = {
            SYSTEM: "kafka",
            DESTINATION: topic,
            OPERATION: "process",
            BATCH_COUNT: len(records),
        }
        partitions = sorted({record.partition for record in records})
        if len(partitions) == 1:
            attributes[PARTITION] = str(partitions[0])
        with self.tracer.start_as_current_span(
            f"{topic} process",
            context=contexts.parent or otel_context.Context(),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=[Link(span_context) for span_context in contexts.links],
        ) as batch_span:
            started = getattr(batch_span, "start_time", None)
            error: BaseException | None = None
            try:
                return await call_next(msg)
            except BaseException as failure:
                error = failure
                raise
            finally:
                self._reach_other_traces(topic, contexts, batch_span, started, error)

    def _reach_other_traces(
        self,
        topic: str,
        contexts: ProducerContexts,
        batch_span: trace.Span,
        started: int | None,
        error: BaseException | None,
    ) -> None:
        """A ``process`` span in each other trace of the batch, linking to the batch span."""
        own = batch_span.get_span_context()
        if not own.is_valid or not own.trace_flags.sampled:
            return
        for trace_id, (parent, count) in contexts.first_of_trace.items():
            if trace_id == own.trace_id:
                continue
            span = self.tracer.start_span(
                f"{topic} process",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    SYSTEM: "kafka",
                    DESTINATION: topic,
                    OPERATION: "process",
                    BATCH_COUNT: count,
                    "attune.batch.trace_id": trace.format_trace_id(own.trace_id),
                },
                links=[Link(own, {"attune.link": "batch"})],
                start_time=started,
            )
            if error is not None:
                _fail(span, error)
            span.end()


def _fail(span: trace.Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _end_on_ack(span: trace.Span, ack: asyncio.Future[Any]) -> None:
    if ack.cancelled():
        span.set_status(Status(StatusCode.ERROR, "cancelled"))
    elif (error := ack.exception()) is not None:
        _fail(span, error)
    span.end()


__all__ = ["KafkaTracing", "ProducerContexts"]
