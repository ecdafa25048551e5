"""Prometheus scrapes every Attune service; Grafana is provisioned with Prometheus (and
Jaeger) and a dashboards folder, ready for the dashboards to come."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
import yaml

from services.common.runner import SERVICES
from tests.deploy.files import OBSERVABILITY, ROOT, compose_environment, load_compose

GRAFANA_PROVISIONING = OBSERVABILITY / "grafana" / "provisioning"


@pytest.fixture(scope="module")
def services() -> dict:
    return load_compose()["services"]


def mounts(service: dict) -> dict[str, str]:
    """Container path -> host path of a compose service's bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = str((ROOT / source).resolve())
    return found


def test_prometheus_scrapes_every_service_on_its_http_port(services: dict) -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    targets: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                targets[target] = job.get("metrics_path", "/metrics")
    for service in SERVICES:
        port = compose_environment(services[service])["ATTUNE_HTTP_PORT"]
        assert targets.get(f"{service}:{port}") == "/metrics", f"{service} is not scraped"
    assert "qdrant:6333" in targets


def test_prometheus_config_and_rules_are_mounted(services: dict) -> None:
    prometheus = services["prometheus"]
    bound = mounts(prometheus)
    assert bound["/etc/prometheus/prometheus.yml"] == str(OBSERVABILITY / "prometheus.yml")
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    for pattern in config["rule_files"]:
        folder = str(PurePosixPath(pattern).parent)
        assert folder in bound, f"{pattern} is not in a mounted folder"
        assert bound[folder] == str(OBSERVABILITY / "rules")
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_grafana_has_prometheus_as_its_default_data_source(services: dict) -> None:
    datasources = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "datasources.yaml").read_text()
    )
    by_type = {d["type"]: d for d in datasources["datasources"]}
    prometheus = by_type["prometheus"]
    assert prometheus["isDefault"] is True
    assert prometheus["url"] == "http://prometheus:9090"
    assert "prometheus" in services
    assert by_type["jaeger"]["url"] == "http://jaeger:16686"
    assert len({d["uid"] for d in datasources["datasources"]}) == len(datasources["datasources"])


def test_grafana_loads_dashboards_from_a_mounted_folder(services: dict) -> None:
    bound = mounts(services["grafana"])
    assert bound["/etc/grafana/provisioning"] == str(GRAFANA_PROVISIONING)
    providers = yaml.safe_load(
        (GRAFANA_PROVISIONING / "dashboards" / "dashboards.yaml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"]
    assert bound[folder] == str(OBSERVABILITY / "grafana" / "dashboards")
    assert (OBSERVABILITY / "grafana" / "dashboards").is_dir()
    assert (GRAFANA_PROVISIONING / "alerting").is_dir()
