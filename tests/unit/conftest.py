"""Unit-test fixtures."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def kafka_log_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastStream's TestKafkaBroker gives every record offset 0; consumers compare offsets
    with what their state has applied, so number the records a handler receives with the
    next offsets of their partition, as a Kafka log would."""
    from faststream.kafka.testing import FakeProducer

    real = FakeProducer._execute_handler
    next_offset: defaultdict[tuple[str, int], int] = defaultdict(int)

    async def numbered(self: FakeProducer, msg: Any, topic: str, handler: Any) -> Any:
        for record in msg if isinstance(msg, list) else [msg]:
            position = (record.topic, record.partition)
            record.offset = next_offset[position]
            next_offset[position] += 1
        return await real(self, msg, topic, handler)

    monkeypatch.setattr(FakeProducer, "_execute_handler", numbered)
