"""A process asked to stop stops, even when its consumers do not."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker

from services.app.bootstrap import stop_within


class Broker:
    def __init__(self, stop_takes_s: float) -> None:
        self.stop_takes_s = stop_takes_s
        self.stopped = False

    async def stop(self) -> None:
        await asyncio.sleep(self.stop_takes_s)
        self.stopped = True


async def test_a_broker_that_stops_in_time_is_waited_for() -> None:
    broker = Broker(stop_takes_s=0.05)
    await stop_within(cast(KafkaBroker, broker), 5.0)
    assert broker.stopped


async def test_a_broker_that_does_not_stop_is_left_after_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker: Any = Broker(stop_takes_s=3_600)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        await stop_within(broker, 0.2)
    assert time.monotonic() - started < 2.0
    assert not broker.stopped
    assert "did not stop within" in caplog.text
