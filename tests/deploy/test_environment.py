"""Every ATTUNE_ variable the deployment files set is one the settings know, each
container's environment is a valid production configuration, and every `attune run`
names a real service."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.app.bootstrap import check_access_for
from services.app.names import SERVICES, Service
from services.common.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from tests.deploy.files import (
    K8S_BASE,
    K8S_PRODUCTION,
    as_argv,
    base_secret_keys,
    compose_environment,
    container_environment,
    load_compose,
    load_dockerfile,
    parse_env,
    rendered,
    workload_containers,
)
from tests.deploy.kustomize import Obj

RENDERS = {"base": K8S_BASE, "production": K8S_PRODUCTION}
SECRET_VARIABLES = {
    "ATTUNE_REDIS_URL",
    "ATTUNE_QDRANT_API_KEY",
    "ATTUNE_KAFKA_SASL_PASSWORD",
    "ATTUNE_WRITE_KEYS",
    "ATTUNE_READ_KEYS",
}
KEY_VARIABLES = ("ATTUNE_WRITE_KEYS", "ATTUNE_READ_KEYS")
# What an operator puts in the Secret instead of the placeholders.
REAL_KEYS = {
    "ATTUNE_WRITE_KEYS": '{"acme": ["wk-3c9e1a7f5b2d8046"]}',
    "ATTUNE_READ_KEYS": '{"acme": ["rk-8f2d6b0a4e1c9573"]}',
}


def every_variable_set() -> Iterator[tuple[str, str]]:
    """(where, name) of every variable the deployment files set."""
    for name, service in load_compose()["services"].items():
        for variable in compose_environment(service):
            yield f"compose.yaml services.{name}", variable
    for render_name, folder in RENDERS.items():
        for obj in rendered(folder):
            where = f"k8s {render_name} {obj['kind']}/{obj['metadata']['name']}"
            for key in {**obj.get("data", {}), **obj.get("stringData", {})}:
                if obj["kind"] in ("ConfigMap", "Secret"):
                    yield where, key
            for _, container in workload_containers([obj]):
                for variable in container.get("env", []):
                    yield where, variable["name"]
    for instruction in load_dockerfile().instructions:
        if instruction.keyword == "ENV":
            for variable in parse_env(instruction.arguments):
                yield "deploy/docker/Dockerfile", variable


def test_every_attune_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    attune = [(where, v) for where, v in every_variable_set() if v.startswith(ENV_PREFIX)]
    assert len(attune) > 20
    unknown = [
        f"{where}: {variable}"
        for where, variable in attune
        if variable.removeprefix(ENV_PREFIX).lower() not in fields
    ]
    assert not unknown, "not in services/common/settings.py:\n" + "\n".join(unknown)


def test_secrets_live_only_in_the_secret() -> None:
    """Compose is the local stack (no secrets worth the name); on Kubernetes the secret
    variables come from the Secret and nowhere else."""
    assert base_secret_keys() == SECRET_VARIABLES
    for render_name, folder in RENDERS.items():
        for obj in rendered(folder):
            if obj["kind"] == "ConfigMap":
                assert not set(obj["data"]) & SECRET_VARIABLES, render_name
            for _, container in workload_containers([obj]):
                names = {v["name"] for v in container.get("env", [])}
                assert not names & SECRET_VARIABLES, render_name
    dockerfile_env = load_dockerfile().final_env()
    assert not set(dockerfile_env) & SECRET_VARIABLES


# -- each container's configuration, as the service would load it ------------------------


def _containers() -> Iterator[tuple[str, str, dict[str, str]]]:
    """(where, service, environment) of every Attune container, the image's ENV
    included."""
    image_env = load_dockerfile().final_env()
    services = load_compose()["services"]
    for name, service in services.items():
        argv = as_argv(service.get("command"))
        if argv[:1] == ["run"]:
            yield f"compose {name}", argv[1], {**image_env, **compose_environment(service)}
    for render_name, folder in RENDERS.items():
        objects: list[Obj] = rendered(folder)
        for obj, container in workload_containers(objects):
            args = container.get("args", [])
            if args[:1] == ["run"]:
                env = {**image_env, **container_environment(objects, container)}
                yield f"k8s {render_name} {obj['metadata']['name']}", args[1], env


CONTAINERS = list(_containers())


def load_with(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for variable in list(os.environ):
        if variable.startswith(ENV_PREFIX):
            monkeypatch.delenv(variable)
    for variable, value in env.items():
        if variable.startswith(ENV_PREFIX):
            monkeypatch.setenv(variable, value)
    return load_settings()


def test_every_service_runs_in_compose_and_on_kubernetes() -> None:
    for prefix in ("compose", "k8s base", "k8s production"):
        found = sorted(service for where, service, _ in CONTAINERS if where.startswith(prefix))
        assert found == sorted(SERVICES), prefix


@pytest.mark.parametrize(
    ("where", "service", "env"), CONTAINERS, ids=[where for where, _, _ in CONTAINERS]
)
def test_each_container_has_a_valid_production_configuration(
    monkeypatch: pytest.MonkeyPatch, where: str, service: str, env: dict[str, str]
) -> None:
    assert service in SERVICES, f"{where}: `attune run {service}` is no service"
    # what production needs is set explicitly, not left to the laptop defaults
    for required in (
        "ATTUNE_KAFKA_BOOTSTRAP_SERVERS",
        "ATTUNE_REDIS_URL",
        "ATTUNE_VECTOR_INDEX",
        "ATTUNE_QDRANT_URL",
        "ATTUNE_HTTP_HOST",
        "ATTUNE_HTTP_PORT",
    ):
        assert env.get(required), f"{where}: {required} is not set"
    if where.startswith("k8s"):
        # the Secret's placeholder keys stop every pod until they are replaced
        with pytest.raises(SettingsError) as refused:
            load_with(monkeypatch, env)
        assert all(variable in str(refused.value) for variable in KEY_VARIABLES), where
        assert all("placeholder" in line for line in str(refused.value).splitlines()[1:])
        env = {**env, **REAL_KEYS}
    settings = load_with(monkeypatch, env)  # validates every value
    check_access_for(settings, [Service(service)])  # `attune run` would start
    assert settings.vector_index == "qdrant", "Qdrant Edge is in-process only"
    assert settings.qdrant_url is not None
    assert settings.http_host == "0.0.0.0"
    assert settings.kafka_enable_idempotence is True, "real Kafka supports it"
    assert "127.0.0.1" not in settings.kafka_bootstrap_servers
    assert "127.0.0.1" not in settings.redis_url.get_secret_value()
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_username, f"{where}: SASL needs a user"
        assert settings.kafka_sasl_password is not None, f"{where}: SASL needs a password"
    if service in ("embedder", "query"):
        assert settings.resolved_embedding_model_path == Path(
            load_dockerfile().final_env()["ATTUNE_EMBEDDING_MODEL_PATH"]
        ), "the model baked into the image"


def test_the_image_names_real_services_only() -> None:
    text = " ".join(i.arguments for i in load_dockerfile().instructions)
    for word in text.split("attune run ")[1:]:
        assert word.split()[0].strip("\"',]") in SERVICES
