"""Kafka plumbing shared by the services: the FastStream broker, raw client options,
and topic creation (for the embedded broker and for a real cluster alike)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from schemas.topics import ALL_TOPICS, TopicSpec
from services.common import telemetry
from services.common.settings import Settings

log = logging.getLogger(__name__)

CLIENT_ID = "attune"
"""How Attune's Kafka clients name themselves to the cluster (its logs, quotas, ACLs)."""


def kafka_security(settings: Settings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol
    use_ssl = protocol in ("SSL", "SASL_SSL")
    # aiokafka refuses SSL without a context: this one checks the broker's certificate
    # against the system's CAs, as managed clusters expect.
    ssl_context = create_ssl_context() if use_ssl else None
    if protocol.startswith("SASL"):
        if settings.kafka_sasl_username is None or settings.kafka_sasl_password is None:
            raise ValueError(
                "ATTUNE_KAFKA_SASL_USERNAME and ATTUNE_KAFKA_SASL_PASSWORD are required "
                f"with ATTUNE_KAFKA_SECURITY_PROTOCOL={protocol}"
            )
        sasl = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }[settings.kafka_sasl_mechanism]
        return sasl(
            settings.kafka_sasl_username,
            settings.kafka_sasl_password.get_secret_value(),
            use_ssl=use_ssl,
            ssl_context=ssl_context,
        )
    return BaseSecurity(ssl_context=ssl_context, use_ssl=True) if use_ssl else None


def bootstrap_servers(settings: Settings) -> list[str]:
    """The host:port list; FastStream would take the comma-separated string as one host."""
    return [server.strip() for server in settings.kafka_bootstrap_servers.split(",")]


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for raw aiokafka clients (admin, replay consumers)."""
    return {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": CLIENT_ID,
        **parse_security(kafka_security(settings)),
    }


def make_broker(settings: Settings, **options: Any) -> KafkaBroker:
    """A FastStream broker whose publishes wait for every in-sync replica (acks=all).
    With tracing on, its publishes and batches carry the trace across the topic
    (:mod:`services.common.kafka_tracing`); off, it has no tracing middleware at all."""
    middlewares: list[Any] = list(options.pop("middlewares", ()))
    provider = telemetry.tracer_provider()
    if provider is not None:
        from services.common.kafka_tracing import KafkaTracing

        middlewares.append(KafkaTracing(provider))
    return KafkaBroker(
        bootstrap_servers(settings),
        security=kafka_security(settings),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        request_timeout_ms=max(40_000, settings.kafka_session_timeout_ms),
        graceful_timeout=settings.shutdown_timeout_s,
        # A plain logger: FastStream's default one writes colourized text to stdout of
        # its own; this one goes through the process's handler (JSON lines).
        **{
            "client_id": CLIENT_ID,
            "logger": logging.getLogger("attune.kafka"),
            "log_level": logging.DEBUG,  # FastStream logs every message at this level
            "middlewares": middlewares,
            **options,  # a caller's own logger (e.g. None: silent) wins
        },
    )


async def check_broker(broker: KafkaBroker) -> None:
    """Readiness: raise unless the cluster answers within a second."""
    if not await broker.ping(timeout=1.0):
        raise ConnectionError("Kafka does not answer")


async def ensure_topics(
    settings: Settings,
    topics: Iterable[TopicSpec] = ALL_TOPICS,
    *,
    replication_factor: int = 1,
    with_config: bool = True,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication_factor,
                topic_configs=dict(spec.config) if with_config else None,
            )
            for spec in topics
            if spec.name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.info("topics were created concurrently by another client")
        return [topic.name for topic in missing]
    finally:
        await admin.close()


CONNECT_TIMEOUT_S = 10.0
RETRY_DELAY_S = (0.5, 10.0)  # first and longest wait between connection attempts


async def try_connect(broker: KafkaBroker, settings: Settings) -> bool:
    """Connect ``broker`` (its producer) if the cluster answers; False (logged) if not."""
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
            "Kafka at %s is unreachable (%s); publishing answers 503 until it is back",
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


@asynccontextmanager
async def connected_producer(broker: KafkaBroker, settings: Settings) -> AsyncIterator[None]:
    """For a process that only publishes (ingest alone): connect now if Kafka answers,
    else keep trying in the background, so that the process starts (and says why it is
    not ready) while Kafka is down. The broker is stopped at the end."""
    connecting = None
    if not await try_connect(broker, settings):
        connecting = asyncio.create_task(keep_connecting(broker, settings))
    try:
        yield
    finally:
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
        await broker.stop()


__all__ = [
    "CLIENT_ID",
    "aiokafka_options",
    "bootstrap_servers",
    "check_broker",
    "connected_producer",
    "ensure_topics",
    "kafka_security",
    "make_broker",
    "try_connect",
]
