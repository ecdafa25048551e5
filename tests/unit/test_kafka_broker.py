"""make_broker: acks=all, and a caller's options win over its defaults."""

from __future__ import annotations

from services.common.kafka import make_broker
from services.common.settings import Settings


def test_a_callers_logger_replaces_the_default_one() -> None:
    # bench/freshness.py silences FastStream's per-message logging this way.
    broker = make_broker(Settings(), logger=None)
    assert broker is not None


def test_the_default_broker_has_no_middleware_when_tracing_is_off() -> None:
    assert not make_broker(Settings()).middlewares
