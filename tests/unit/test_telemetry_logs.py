"""Log lines are JSON objects carrying the trace and span ids of the current span."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from services.common.logs import JsonFormatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("attune.test", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_line_inside_a_span_carries_its_trace_and_span_ids() -> None:
    formatter = JsonFormatter("attune-ingest")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        line = formatter.format(record("stored %d items", 3, topic="attune.content"))
    entry = json.loads(line)
    context = span.get_span_context()
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"
    assert entry["message"] == "stored 3 items"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "attune.test"
    assert entry["service"] == "attune-ingest"
    assert entry["topic"] == "attune.content"  # extra fields are kept
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line


def test_a_line_outside_any_span_has_null_ids_and_keeps_the_exception() -> None:
    formatter = JsonFormatter("attune-query")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failing = record("failed")
        failing.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(failing))
    assert entry["trace_id"] is None
    assert entry["span_id"] is None
    assert "ValueError: boom" in entry["exception"]
