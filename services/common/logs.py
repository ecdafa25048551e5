"""How Attune's processes log: one JSON object per line (the default for ``attune run``),
or plain text for the interactive commands. Each JSON line has ``time`` (UTC, ISO
8601), ``level``, ``logger``, ``message``, ``service``, and ``trace_id`` / ``span_id``
of the span current when the line was logged (null outside any span), so that a log
line leads to its trace in Jaeger and back; an exception adds ``exception``, and the
``extra`` fields of a record (e.g. FastStream's topic and group) are kept.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace

LogFormat = Literal["json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}  # fmt: skip


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON, with the current trace and span ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        span_context = trace.get_current_span().get_span_context()
        valid = span_context.is_valid
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "trace_id": trace.format_trace_id(span_context.trace_id) if valid else None,
            "span_id": trace.format_span_id(span_context.span_id) if valid else None,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, *, service: str, fmt: LogFormat = "json") -> None:
    """Send every log record to stderr, as JSON lines or as text, from ``level`` up."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(service) if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # FastStream's own logger writes to its own handler, colourized, and does not
    # propagate: route it through ours.
    faststream = logging.getLogger("faststream")
    for own in list(faststream.handlers):
        faststream.removeHandler(own)
    faststream.propagate = True


__all__ = ["JsonFormatter", "LogFormat", "configure_logging"]
