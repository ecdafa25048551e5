"""make_broker and aiokafka_options: the options Attune's Kafka clients get from the
settings, read off the clients aiokafka builds from them (the producer as FastStream's
connect builds it, the consumer from FastStream's builder), none of them connected."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker

from services.common.kafka import CLIENT_ID, aiokafka_options, make_broker
from services.common.settings import Settings

TWO_SERVERS = "kafka-a.example:9092,kafka-b.example:9093"
SERVERS_AS_HOSTS = {("kafka-a.example", 9092), ("kafka-b.example", 9093)}


@asynccontextmanager
async def built_clients(broker: KafkaBroker) -> AsyncIterator[tuple[AIOKafkaClient, ...]]:
    """The producer's and a consumer's aiokafka clients, built as FastStream builds them
    on connect (``KafkaBrokerConfig.connect``), never started."""
    producer = AIOKafkaProducer(**broker._connection_kwargs)
    consumer: AIOKafkaConsumer = broker.config.builder()
    try:
        yield producer.client, consumer._client
    finally:
        await producer.client.close()
        await consumer._client.close()


def hosts(client: AIOKafkaClient) -> set[tuple[str, int]]:
    return {(host, port) for host, port, _ in client.hosts}


async def test_every_bootstrap_server_is_a_host_of_its_own() -> None:
    settings = Settings(kafka_bootstrap_servers=TWO_SERVERS)
    async with built_clients(make_broker(settings)) as clients:
        for client in clients:
            assert hosts(client) == SERVERS_AS_HOSTS
    assert hosts(AIOKafkaClient(**aiokafka_options(settings))) == SERVERS_AS_HOSTS


async def test_clients_name_themselves_attune() -> None:
    async with built_clients(make_broker(Settings())) as clients:
        for client in (*clients, AIOKafkaClient(**aiokafka_options(Settings()))):
            assert client._client_id == CLIENT_ID == "attune"


@pytest.mark.parametrize("idempotent", [True, False])
async def test_the_producer_waits_for_every_replica_idempotent_as_set(idempotent: bool) -> None:
    broker = make_broker(Settings(kafka_enable_idempotence=idempotent))
    producer = AIOKafkaProducer(**broker._connection_kwargs)
    try:
        assert producer._sender._acks == -1  # acks=all
        # aiokafka keeps producer ids and sequence numbers only when idempotent
        assert (producer._txn_manager is not None) is idempotent
    finally:
        await producer.client.close()


async def test_plaintext_by_default() -> None:
    async with built_clients(make_broker(Settings())) as clients:
        for client in clients:
            assert client._security_protocol == "PLAINTEXT"
            assert client._ssl_context is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_ssl_credentials_and_tls_come_from_the_settings(mechanism: str) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
        kafka_sasl_username="api-key",
        kafka_sasl_password="api-secret",  # type: ignore[arg-type]
    )
    async with built_clients(make_broker(settings)) as clients:
        for client in (*clients, AIOKafkaClient(**aiokafka_options(settings))):
            assert client._security_protocol == "SASL_SSL"
            assert client._sasl_mechanism == mechanism
            assert client._sasl_plain_username == "api-key"
            assert client._sasl_plain_password == "api-secret"
            assert isinstance(client._ssl_context, ssl.SSLContext)
            assert client._ssl_context.verify_mode == ssl.CERT_REQUIRED


async def test_sasl_plaintext_has_no_tls() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="user",
        kafka_sasl_password="secret",  # type: ignore[arg-type]
    )
    async with built_clients(make_broker(settings)) as clients:
        for client in clients:
            assert client._security_protocol == "SASL_PLAINTEXT"
            assert client._sasl_mechanism == "PLAIN"
            assert client._ssl_context is None


async def test_ssl_verifies_the_brokers_certificate() -> None:
    settings = Settings(kafka_security_protocol="SSL")
    async with built_clients(make_broker(settings)) as clients:
        for client in (*clients, AIOKafkaClient(**aiokafka_options(settings))):
            assert client._security_protocol == "SSL"
            assert isinstance(client._ssl_context, ssl.SSLContext)
            assert client._ssl_context.check_hostname


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="ATTUNE_KAFKA_SASL_USERNAME"):
        make_broker(Settings(kafka_security_protocol="SASL_SSL"))


def test_graceful_timeout_and_request_timeout_come_from_the_settings() -> None:
    broker = make_broker(Settings(shutdown_timeout_s=3.5, kafka_session_timeout_ms=60_000))
    assert broker.config.graceful_timeout == 3.5
    assert broker._connection_kwargs["request_timeout_ms"] == 60_000


def _logger(broker: KafkaBroker) -> Any:
    return broker.config.logger.params_storage.get_logger(context=broker.config.fd_config.context)


def test_the_default_logger_goes_through_the_process_handler() -> None:
    assert _logger(make_broker(Settings())) is logging.getLogger("attune.kafka")


def test_a_callers_logger_replaces_the_default_one() -> None:
    # bench/freshness.py silences FastStream's per-message logging this way.
    assert _logger(make_broker(Settings(), logger=None)) is None
    mine = logging.getLogger("mine")
    assert _logger(make_broker(Settings(), logger=mine)) is mine


def test_the_default_broker_has_no_middleware_when_tracing_is_off() -> None:
    assert not make_broker(Settings()).middlewares
