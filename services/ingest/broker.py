"""The ingest service's broker connection: made at start-up if the broker answers, else
retried in the background (meanwhile ingest answers 503 and /readyz says why)."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaClient
from faststream.kafka import KafkaBroker

from services.common.kafka import aiokafka_options
from services.common.settings import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
RETRY_DELAY_S = (0.5, 10.0)  # first and longest wait between attempts


async def try_connect(broker: KafkaBroker, settings: Settings) -> bool:
    """Connect ``broker`` if the cluster answers; False (logged) if it does not."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            # A throwaway client first: a failed broker.connect() leaks its producer.
            probe = AIOKafkaClient(**aiokafka_options(settings))
            try:
                await probe.bootstrap()
            finally:
                await probe.close()
            await broker.connect()
    except Exception as error:
        log.warning(
            "Kafka at %s is unreachable (%s); ingest answers 503 until it is back",
            settings.kafka_bootstrap_servers,
            error,
        )
        return False
    log.info("connected to Kafka at %s", settings.kafka_bootstrap_servers)
    return True


async def keep_connecting(broker: KafkaBroker, settings: Settings) -> None:
    """After a failed :func:`try_connect`: retry with backoff until one succeeds."""
    delay, longest = RETRY_DELAY_S
    while True:
        await asyncio.sleep(delay)
        if await try_connect(broker, settings):
            return
        delay = min(delay * 2, longest)


__all__ = ["keep_connecting", "try_connect"]
