"""Tracing is configured by the standard OTEL_* variables: off unless an exporter or an
OTLP endpoint is set (and then nothing is instrumented), OTLP over HTTP by default and
over gRPC when OTEL_EXPORTER_OTLP_PROTOCOL says so, with a service.name per service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc  # type: ignore[import-untyped]
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from redis.asyncio import Redis

from services.app.embedded import free_port
from services.common import telemetry
from services.common.http import create_http_app
from services.common.kafka import make_broker
from services.common.kafka_tracing import KafkaTracing
from services.common.settings import Settings
from services.common.telemetry import TelemetryConfigError
from services.common.tracing import traced_redis


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable from the outside; the global provider is left alone."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(trace, "set_tracer_provider", lambda provider: None)
    yield
    telemetry.shutdown_telemetry()
    telemetry.install(None)


def test_tracing_is_off_without_an_exporter_or_endpoint() -> None:
    assert telemetry.exporter_names() == []
    assert telemetry.configure_telemetry("ingest") is None
    assert telemetry.tracer_provider() is None
    assert isinstance(telemetry.tracer("x"), trace.NoOpTracer)


def test_an_endpoint_alone_turns_otlp_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert telemetry.exporter_names() == ["otlp"]
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert telemetry.exporter_names() == []


def test_bad_values_are_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(TelemetryConfigError, match="OTEL_TRACES_EXPORTER"):
        telemetry.configure_telemetry("ingest")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(TelemetryConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        telemetry.configure_telemetry("ingest")


def test_http_protobuf_is_the_default_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert telemetry.otlp_protocol() == "http/protobuf"
    assert isinstance(telemetry._exporter("otlp"), HttpSpanExporter)


def test_the_service_name_is_per_service_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = telemetry.make_tracer_provider("usermodel")
    assert provider.resource.attributes["service.name"] == "attune-usermodel"
    assert provider.resource.attributes["service.namespace"] == "attune"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "my-usermodel")
    provider = telemetry.make_tracer_provider("usermodel")
    assert provider.resource.attributes["service.name"] == "my-usermodel"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.received = threading.Event()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        self.received.set()
        return trace_service_pb2.ExportTraceServiceResponse()


def test_grpc_export_is_chosen_by_the_protocol_and_reaches_a_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        assert isinstance(telemetry._exporter("otlp"), GrpcSpanExporter)
        provider = telemetry.configure_telemetry("embedder")
        assert provider is not None
        with telemetry.tracer("test").start_as_current_span("over grpc"):
            pass
        telemetry.shutdown_telemetry()  # flushes the batch processor
        assert collector.received.wait(10)
    finally:
        server.stop(None)
    (resource_spans,) = collector.requests[0].resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "attune-embedder"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["over grpc"]


def test_nothing_is_instrumented_when_tracing_is_off() -> None:
    settings = Settings()
    broker = make_broker(settings)
    assert not any(isinstance(m, KafkaTracing) for m in broker.middlewares)
    app = create_http_app(service="t", title="t", description="t", settings=settings, routers=[])
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert all("OpenTelemetry" not in m.cls.__name__ for m in app.user_middleware)  # type: ignore[attr-defined]
    client = Redis()
    assert traced_redis(client) is client


def test_with_a_provider_the_broker_and_app_are_instrumented() -> None:
    provider = TracerProvider()
    with telemetry.use_tracer_provider(provider):
        settings = Settings()
        assert any(isinstance(m, KafkaTracing) for m in make_broker(settings).middlewares)
        app = create_http_app(
            service="t", title="t", description="t", settings=settings, routers=[]
        )
        assert getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert telemetry.tracer_provider() is None
