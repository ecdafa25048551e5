"""Prometheus scrapes every Attune service and loads the alert rules; Grafana is
provisioned with Prometheus, Jaeger and the Attune dashboard; Jaeger takes OTLP from
every service. The dashboard's and the rules' PromQL name only series the code exports
(read from prometheus-client's registry)."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from services.app.names import SERVICES
from tests.deploy.files import OBSERVABILITY, ROOT, compose_environment, load_compose
from tests.deploy.promql import PROMETHEUS_OWN, exported_metrics, exported_series, metric_names

GRAFANA_PROVISIONING = OBSERVABILITY / "grafana" / "provisioning"
DASHBOARDS = OBSERVABILITY / "grafana" / "dashboards"
RULES = OBSERVABILITY / "rules"

# The series the issue asks operators to watch, as the metric names that carry them.
WATCHED = {
    "messages consumed": "attune_consumer_messages_total",
    "messages failed": "attune_consumer_failed_messages_total",
    "messages dead-lettered": "attune_consumer_dead_lettered_total",
    "consumer lag per partition": "attune_consumer_lag",
    "batch size": "attune_consumer_batch_size_bucket",
    "batch processing time": "attune_consumer_batch_duration_seconds_bucket",
    "freshness": "attune_freshness_seconds_bucket",
    "embedding docs/s": "attune_embedder_docs_embedded_total",
    "HTTP latency per route and status": "attune_http_request_duration_seconds_bucket",
    "dependency up/down": "attune_dependency_up",
}


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


# -- dashboard and alert rules ------------------------------------------------------------


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"], path
        assert dashboard["title"], path
        for panel in dashboard["panels"]:
            panels.extend([panel, *panel.get("panels", [])])
    return panels


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted(RULES.glob("*.yml")):
        groups = yaml.safe_load(path.read_text())["groups"]
        for group in groups:
            assert group["name"], path
            assert group["rules"], path
            rules.extend(group["rules"])
    return rules


def test_the_metric_names_come_from_the_code() -> None:
    assert set(WATCHED.values()) <= exported_series()


def test_the_dashboard_names_only_exported_series_and_shows_each_watched_one() -> None:
    exprs = dashboard_exprs()
    assert exprs
    named = set().union(*(metric_names(expr) for expr in exprs))
    assert named <= exported_series() | PROMETHEUS_OWN, named - exported_series()
    for what, series in WATCHED.items():
        assert series in named, f"the dashboard does not show {what} ({series})"
    for panel in dashboard_panels():
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "prometheus", panel["title"]
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids))


def test_the_alert_rules_parse_and_name_only_exported_series() -> None:
    rules = alert_rules()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        named = metric_names(rule["expr"])
        assert named, rule["alert"]
        assert named <= exported_series() | PROMETHEUS_OWN, (rule["alert"], named)
    assert len({rule["alert"] for rule in rules}) == len(rules)


def rule(name: str) -> dict[str, Any]:
    (found,) = [r for r in alert_rules() if r["alert"] == name]
    return found


def compact(expr: str) -> str:
    return " ".join(expr.split())


def test_the_alerts_the_issue_asks_for() -> None:
    lag = rule("AttuneConsumerLagGrowing")
    assert "deriv(attune_consumer_lag[5m])" in lag["expr"]
    assert lag["for"] == "5m"
    freshness = compact(rule("AttuneFreshnessP99High")["expr"])
    assert "histogram_quantile(0.99," in freshness
    assert "attune_freshness_seconds_bucket" in freshness
    assert freshness.endswith("> 1")
    assert compact(rule("AttuneDeadLetters")["expr"]).endswith("> 0")
    assert 'status=~"5.."' in rule("AttuneHttp5xx")["expr"]
    for name, route, target in (
        ("AttuneRecommendationsSlow", "/v1/users/{user_id}/recommendations", "0.003"),
        ("AttuneSearchSlow", "/v1/search", "0.010"),
    ):
        expr = compact(rule(name)["expr"])
        assert f'route="{route}"' in expr
        assert "histogram_quantile(0.99," in expr
        assert expr.endswith(f"> {target}")


def test_the_query_targets_fall_on_histogram_bucket_bounds() -> None:
    from services.common.http import HTTP_LATENCY

    bounds = set(HTTP_LATENCY._upper_bounds)
    assert {0.010, 0.025} <= bounds
    from services.common.metrics import FRESHNESS_SECONDS

    assert 1 in set(FRESHNESS_SECONDS._upper_bounds)


def test_every_service_exports_traces_to_jaeger_over_otlp(services: dict) -> None:
    jaeger = services["jaeger"]
    assert compose_environment(jaeger)["COLLECTOR_OTLP_ENABLED"] == "true"
    for service in SERVICES:
        env = compose_environment(services[service])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"] == f"attune-{service}"
        assert "jaeger" in services[service]["depends_on"]


def test_the_operations_guide_lists_every_metric_and_alert() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("## Observability") :]
    for metric in exported_metrics():
        assert f"`{metric}`" in section, f"{metric} is not in the metrics table"
    for alert in alert_rules():
        assert f"`{alert['alert']}`" in section
