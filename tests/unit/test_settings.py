from __future__ import annotations

import json
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


# -- access: write and read keys ---------------------------------------------------------

GOOD_KEY = "wk-acme-9f3c1e7a5d"


@pytest.mark.parametrize("variable", ["ATTUNE_WRITE_KEYS", "ATTUNE_READ_KEYS"])
@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ('{"acme": ["CHANGE-ME"]}', "shorter than 16"),
        ('{"acme": ["CHANGE-ME-write-key-01"]}', "placeholder"),
        ('{"acme": ["changeme_changeme_2024"]}', "placeholder"),
        ('{"acme": ["your-api-key-goes-here"]}', "placeholder"),
        ('{"acme": ["k-123"]}', "shorter than 16"),
        ('{"acme": ["aaaaaaaaaaaaaaaaaaaa"]}', "distinct characters"),
        ('{"acme": ["wk acme 9f3c1e7a5d"]}', "whitespace"),
        ('{"acme": ["wk:acme:9f3c1e7a5d"]}', "whitespace or ':'"),
        ('{"Acme": ["wk-acme-9f3c1e7a5d"]}', "does not match"),
        ('{"acme corp": ["wk-acme-9f3c1e7a5d"]}', "does not match"),
        ('{"acme": []}', "has no key"),
        ('{"acme": ["wk-acme-9f3c1e7a5d"], "globex": ["wk-acme-9f3c1e7a5d"]}', "share a key"),
    ],
)
def test_a_bad_key_or_tenant_stops_the_start_without_showing_the_key(
    monkeypatch: pytest.MonkeyPatch, variable: str, keys: str, reason: str
) -> None:
    monkeypatch.setenv(variable, keys)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert variable in message
    assert reason in message
    for key in json.loads(keys).values():
        for value in key:
            assert value not in message


def test_good_keys_load_one_key_may_be_a_string_and_a_key_may_do_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "ATTUNE_WRITE_KEYS", f'{{"acme": "{GOOD_KEY}", "globex": ["wk-glx-2c8e0a4f6b"]}}'
    )
    monkeypatch.setenv("ATTUNE_READ_KEYS", f'{{"acme": ["{GOOD_KEY}", "rk-acme-7b1d5f3a9c"]}}')
    settings = load_settings()
    assert [k.get_secret_value() for k in settings.write_keys["acme"]] == [GOOD_KEY]
    assert len(settings.read_keys["acme"]) == 2
    assert settings.keys_required
    assert GOOD_KEY not in repr(settings) + str(settings.model_dump())
    monkeypatch.delenv("ATTUNE_WRITE_KEYS")
    monkeypatch.delenv("ATTUNE_READ_KEYS")
    assert not load_settings().keys_required


def test_a_key_names_one_tenant_across_write_and_read_keys() -> None:
    with pytest.raises(SettingsError, match="share a key"):
        load_settings(write_keys={"acme": [GOOD_KEY]}, read_keys={"globex": [GOOD_KEY]})


def test_the_removed_api_keys_variable_names_its_successors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATTUNE_API_KEYS", '{"acme": "wk-acme-9f3c1e7a5d"}')
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "ATTUNE_API_KEYS" in message
    assert "ATTUNE_WRITE_KEYS" in message
    assert "ATTUNE_READ_KEYS" in message
    assert "wk-acme-9f3c1e7a5d" not in message


@pytest.mark.parametrize("origin", ["shop.example", "https://shop.example/", "ftp://x.example"])
def test_a_cors_origin_must_be_an_origin(monkeypatch: pytest.MonkeyPatch, origin: str) -> None:
    monkeypatch.setenv("ATTUNE_CORS_ORIGINS", json.dumps([origin]))
    with pytest.raises(SettingsError, match="ATTUNE_CORS_ORIGINS"):
        load_settings()
