"""An OTLP/HTTP trace receiver for the tests, built on opentelemetry-proto: a small
HTTP server on a loopback port that decodes every ExportTraceServiceRequest POSTed to
/v1/traces (protobuf, optionally gzipped) into span rows."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.integration.test_telemetry_traces import SpanRow

# -- the OTLP/HTTP receiver ---------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def rows_of(request: ExportTraceServiceRequest) -> list[SpanRow]:
    rows = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                rows.append(
                    SpanRow(
                        service=str(resource.get("service.name", "?")),
                        name=span.name,
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        links=tuple(
                            (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                        ),
                        attributes=tuple((a.key, _value(a.value)) for a in span.attributes),
                    )
                )
    return rows


@dataclass
class Receiver:
    """Spans decoded from the exports POSTed to /v1/traces, and the request count."""

    rows: list[SpanRow] = field(default_factory=list)
    exports: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[SpanRow]:
        with self.lock:
            return list(self.rows)

    def trace(self, trace_id: str) -> list[SpanRow]:
        return [r for r in self.spans() if r.trace_id == trace_id]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            ok = self.path == "/v1/traces" and "protobuf" in self.headers.get("Content-Type", "")
            if ok:
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    receiver.rows.extend(rows_of(request))
                    receiver.exports += 1
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def otlp_receiver() -> Iterator[tuple[Receiver, int]]:
    """A running receiver and its port on 127.0.0.1; stopped at the end of the block."""
    found = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(found))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


__all__ = ["Receiver", "otlp_receiver", "rows_of"]
