"""OpenTelemetry tracing for Attune's processes, configured by the standard ``OTEL_*``
variables.

``configure_telemetry(service)`` is called once per process by the CLI (``attune run``,
``attune dev``), never at import time. Tracing is on when an exporter is configured:

- ``OTEL_SDK_DISABLED=true``: off, whatever else is set;
- ``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or ``none`` (comma-separated for
  several); unset, it is ``otlp`` when an OTLP endpoint is set
  (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), else
  ``none``: a laptop or a test run exports nothing unless asked to;
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``..._TRACES_PROTOCOL``): ``http/protobuf``
  (the default, port 4318) or ``grpc`` (port 4317); the exporters read the endpoint,
  headers and timeout variables themselves;
- ``OTEL_SERVICE_NAME``: default ``attune-<service>``; ``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_TRACES_SAMPLER`` / ``_ARG`` and ``OTEL_BSP_*`` as the SDK defines them.

When tracing is off nothing is instrumented: the brokers get no tracing middleware,
the HTTP apps, Redis clients and stores are not wrapped, and :func:`tracer` hands out
the no-op tracer. Whatever builds an instrumented object asks :func:`tracer_provider`
at construction time, so a test can install its own provider (e.g. with an in-memory
exporter) with :func:`use_tracer_provider` around the construction.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

log = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")
# Span attributes longer than this are cut (a Redis pipeline's statement lists every
# command); OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT / OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT win.
DEFAULT_ATTRIBUTE_LENGTH = 2048

_provider: TracerProvider | None = None
_configured: TracerProvider | None = None  # the one configure_telemetry built


class TelemetryConfigError(ValueError):
    """An OTEL_* variable has a value Attune cannot use; the message names it."""


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def exporter_names() -> list[str]:
    """The trace exporters the environment asks for (empty: tracing is off)."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return []
    configured = _env("OTEL_TRACES_EXPORTER")
    if not configured:
        endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    names = [name.strip().lower() for name in configured.split(",") if name.strip()]
    for name in names:
        if name not in EXPORTERS:
            raise TelemetryConfigError(
                f"OTEL_TRACES_EXPORTER: {name!r} is not one of {', '.join(EXPORTERS)}"
            )
    return [name for name in names if name != "none"]


def otlp_protocol() -> str:
    protocol = (
        _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in PROTOCOLS:
        raise TelemetryConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not one of {', '.join(PROTOCOLS)}"
        )
    return protocol


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if otlp_protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def service_name(service: str) -> str:
    return _env("OTEL_SERVICE_NAME") or f"attune-{service}"


def _attune_version() -> str:
    try:
        return version("attune")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _span_limits() -> SpanLimits:
    if _env("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT") or _env("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"):
        return SpanLimits()
    return SpanLimits(max_span_attribute_length=DEFAULT_ATTRIBUTE_LENGTH)


def make_tracer_provider(service: str) -> TracerProvider:
    """A provider with the process's resource (service name, namespace, version, and
    OTEL_RESOURCE_ATTRIBUTES) and the sampler of OTEL_TRACES_SAMPLER; no processor."""
    resource = Resource.create(
        {
            SERVICE_NAME: service_name(service),
            SERVICE_NAMESPACE: "attune",
            SERVICE_VERSION: _attune_version(),
        }
    )
    return TracerProvider(resource=resource, span_limits=_span_limits())


def configure_telemetry(service: str) -> TracerProvider | None:
    """Set up tracing for this process from the OTEL_* variables; None when it is off.
    Raises :class:`TelemetryConfigError` for a value it cannot use."""
    global _configured
    names = exporter_names()
    if not names:
        return None
    exporters = [_exporter(name) for name in names]
    provider = make_tracer_provider(service)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    _configured = provider
    trace.set_tracer_provider(provider)  # for libraries that use the global one
    log.info(
        "tracing on: service %s, exporters %s%s",
        service_name(service),
        ", ".join(names),
        f" over {otlp_protocol()}" if "otlp" in names else "",
    )
    return provider


def shutdown_telemetry() -> None:
    """Export what is still buffered and stop the exporters (at the end of the process)."""
    global _configured
    if _configured is not None:
        provider, _configured = _configured, None
        provider.shutdown()
        if _provider is provider:
            install(None)


def install(provider: TracerProvider | None) -> None:
    """Make ``provider`` the one instrumented objects built from now on use."""
    global _provider
    _provider = provider


@contextmanager
def use_tracer_provider(provider: TracerProvider | None) -> Iterator[None]:
    """``provider`` for whatever is built inside the block (tests), then the previous one."""
    previous = _provider
    install(provider)
    try:
        yield
    finally:
        install(previous)


def tracer_provider() -> TracerProvider | None:
    """The provider to instrument with, None when tracing is off."""
    return _provider


def tracing_enabled() -> bool:
    return _provider is not None


def tracer(name: str) -> trace.Tracer:
    """A tracer of the installed provider, or the no-op tracer when tracing is off."""
    if _provider is None:
        return trace.NoOpTracer()
    return _provider.get_tracer(name)


__all__ = [
    "TelemetryConfigError",
    "configure_telemetry",
    "exporter_names",
    "install",
    "make_tracer_provider",
    "otlp_protocol",
    "service_name",
    "shutdown_telemetry",
    "tracer",
    "tracer_provider",
    "tracing_enabled",
    "use_tracer_provider",
]
