"""compose.yaml: valid against the compose-spec schema, and `docker compose up` brings the
stack up in order (healthchecks, depends_on conditions, the topics step first)."""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import re
from graphlib import TopologicalSorter

import jsonschema
import pytest

from schemas.topics import ALL_TOPICS, CONTENT, DEAD_LETTER, EVENTS
from services.app.names import SERVICES
from services.common.kafka import ensure_topics
from tests.deploy.files import (
    COMPOSE_FILE,
    DOCKERFILE,
    ROOT,
    SCHEMAS,
    as_argv,
    compose_environment,
    load_compose,
)

ATTUNE_IMAGE = "attune:local"
USES_REDIS = {"usermodel", "query"}
USES_QDRANT = {"embedder", "query"}
CONSUMES_KAFKA = {"ingest", "embedder", "usermodel"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def compose_schema() -> dict:
    return json.loads((SCHEMAS / "compose-spec.json").read_text())


@pytest.mark.parametrize("interpolated", [False, True], ids=["as-written", "interpolated"])
def test_compose_validates_against_the_compose_spec(interpolated: bool) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = sorted(
        validator.iter_errors(load_compose(interpolated=interpolated)), key=lambda e: e.path
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
    )


def test_the_vendored_schema_is_the_one_its_readme_names() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    digest = hashlib.sha256((SCHEMAS / "compose-spec.json").read_bytes()).hexdigest()
    assert f"sha256 `{digest}`" in readme


def test_the_schema_catches_mistakes() -> None:
    """The vendored schema is strict: a misspelt key fails."""
    bad = load_compose()
    bad["services"]["redis"]["helthcheck"] = bad["services"]["redis"].pop("healthcheck")
    assert list(jsonschema.Draft202012Validator(compose_schema()).iter_errors(bad))


def test_the_whole_stack_is_there(services: dict) -> None:
    images = {name: s.get("image", "") for name, s in services.items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert images["qdrant"].startswith("qdrant/qdrant:")
    assert images["redis"].startswith("redis:7.")
    assert images["jaeger"].startswith("jaegertracing/all-in-one:")
    assert images["prometheus"].startswith("prom/prometheus:")
    assert images["grafana"].startswith("grafana/grafana:")
    for service in SERVICES:
        assert services[service]["image"] == ATTUNE_IMAGE
        assert as_argv(services[service]["command"]) == ["run", service]


def test_third_party_images_are_pinned(services: dict) -> None:
    for name, service in services.items():
        image = service["image"]
        if "build" in service:
            continue
        tag = image.rpartition(":")[2]
        assert ":" in image, f"{name}: pin {image}"
        assert tag != "latest", f"{name}: pin {image}"
        assert re.search(r"\d", tag), f"{name}: {image} names no version"


def test_qdrant_supports_conditional_upserts(services: dict) -> None:
    tag = services["qdrant"]["image"].rpartition(":")[2]
    major, minor = (int(part) for part in tag.lstrip("v").split(".")[:2])
    assert (major, minor) >= (1, 16), "update_filter needs Qdrant >= 1.16"


def test_attune_containers_are_built_from_the_one_dockerfile(services: dict) -> None:
    for service in services.values():
        if service.get("image") != ATTUNE_IMAGE:
            continue
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert "entrypoint" not in service, "the image's ENTRYPOINT (attune) is kept"


def test_depends_on_orders_the_stack_and_is_acyclic(services: dict) -> None:
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use conditions"
        graph[name] = set(depends)
        for dependency, spec in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            target = services[dependency]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{dependency} has no healthcheck"
                assert not target["healthcheck"].get("disable")
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is a one-shot step"
            else:
                assert condition == "service_started"
    TopologicalSorter(graph).prepare()  # raises CycleError on a cycle

    def after(name: str) -> set[str]:
        direct = graph[name]
        return direct.union(*(after(d) for d in direct))

    assert "kafka" in after("topics")
    for service in SERVICES:
        assert {"kafka", "topics"} <= after(service), f"{service} starts after the topics"


def test_each_service_waits_for_what_it_uses(services: dict) -> None:
    for service in SERVICES:
        depends = services[service]["depends_on"]
        if service in CONSUMES_KAFKA:
            assert depends["kafka"]["condition"] == "service_healthy"
            assert depends["topics"]["condition"] == "service_completed_successfully"
        if service in USES_REDIS:
            assert depends["redis"]["condition"] == "service_healthy"
        if service in USES_QDRANT:
            assert depends["qdrant"]["condition"] == "service_healthy"
        # readiness, not mere liveness, gates service_healthy
        assert as_argv(services[service]["healthcheck"]["test"]) == [
            "CMD",
            "attune-healthcheck",
            "/readyz",
        ]


def test_the_topics_step_creates_production_topics_on_one_broker(services: dict) -> None:
    step = services["topics"]
    argv = as_argv(step["command"])
    assert argv[:2] == ["topics", "create"]
    factor = int(argv[argv.index("--replication-factor") + 1])
    kafka_env = compose_environment(services["kafka"])
    brokers = kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@")
    assert factor == brokers == 1, "a replication factor the single broker can hold"
    assert step["restart"] == "no"
    assert step["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert compose_environment(step)["ATTUNE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    # `attune topics create` applies schemas/topics.py, configs included
    assert inspect.signature(ensure_topics).parameters["with_config"].default is True
    assert {t.name for t in ALL_TOPICS} == {CONTENT.name, EVENTS.name, DEAD_LETTER.name}
    assert CONTENT.config["cleanup.policy"] == "compact"
    assert EVENTS.config["cleanup.policy"] == "delete"
    assert EVENTS.config["retention.ms"] == "-1", "kept long enough to rebuild"
    assert CONTENT.partitions >= 6
    assert EVENTS.partitions >= 6


def test_kafka_runs_in_kraft_mode_and_keeps_its_data(services: dict) -> None:
    kafka = services["kafka"]
    env = compose_environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "a base64 UUID"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    mounts = {volume.split(":")[1] for volume in kafka["volumes"]}
    assert env["KAFKA_LOG_DIRS"] in mounts
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_redis_persists_with_aof(services: dict) -> None:
    command = as_argv(services["redis"]["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


def test_stateful_services_keep_their_data_in_volumes(compose: dict) -> None:
    for name, path in [
        ("kafka", "/var/lib/kafka/data"),
        ("qdrant", "/qdrant/storage"),
        ("redis", "/data"),
    ]:
        volumes = compose["services"][name]["volumes"]
        (volume,) = [v for v in volumes if v.split(":")[1] == path]
        assert volume.split(":")[0] in compose["volumes"]


def test_tracing_goes_to_jaeger_over_otlp(services: dict) -> None:
    jaeger = services["jaeger"]
    assert compose_environment(jaeger)["COLLECTOR_OTLP_ENABLED"] == "true"
    published = {p.rsplit(":", 1)[-1] for p in jaeger["ports"]}
    assert {"16686", "4317", "4318"} <= published
    for service in SERVICES:
        env = compose_environment(services[service])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert env["OTEL_SERVICE_NAME"] == f"attune-{service}"


def test_ports_are_published_on_loopback_only(services: dict) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_bind_mounts_exist(services: dict) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source}"
