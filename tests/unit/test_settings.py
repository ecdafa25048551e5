from __future__ import annotations

from pathlib import Path

import pytest

from services.common.settings import Settings, SettingsError, load_settings


def test_defaults_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTUNE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.vector_index == "edge"


def test_variables_use_the_attune_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9093")
    monkeypatch.setenv("ATTUNE_HTTP_PORT", "9001")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9093"
    assert settings.http_port == 9001


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ATTUNE_HTTP_PORT", "eighty"),
        ("ATTUNE_KAFKA_BOOTSTRAP_SERVERS", "no-port-here"),
        ("ATTUNE_VECTOR_INDEX", "faiss"),
        ("ATTUNE_EMBEDDING_BATCH_SIZE", "0"),
    ],
)
def test_a_bad_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_REDIS_URL", "redis://:hunter2@cache:6379/0")
    monkeypatch.setenv("ATTUNE_QDRANT_API_KEY", "qdrant-secret")
    monkeypatch.setenv("ATTUNE_KAFKA_SASL_PASSWORD", "kafka-secret")
    settings = load_settings()
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    for secret in ("hunter2", "qdrant-secret", "kafka-secret"):
        assert secret not in shown
    assert settings.redis_url.get_secret_value() == "redis://:hunter2@cache:6379/0"


def test_an_invalid_secret_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_KAFKA_SESSION_TIMEOUT_MS", "s3cr3t-looking")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "ATTUNE_KAFKA_SESSION_TIMEOUT_MS" in str(raised.value)
    assert "s3cr3t-looking" not in str(raised.value)


def test_default_model_folder_is_under_the_cache_dir(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    assert settings.resolved_embedding_model_path == tmp_path / "models" / "all-MiniLM-L6-v2-int8"
    other = Settings(cache_dir=tmp_path, embedding_model="BAAI/bge-small-en-v1.5")
    assert other.resolved_embedding_model_path is None
    pinned = Settings(embedding_model_path=tmp_path / "m")
    assert pinned.resolved_embedding_model_path == tmp_path / "m"
