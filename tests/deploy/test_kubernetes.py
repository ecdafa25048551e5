"""deploy/k8s: the base and the production overlay, rendered by the real kustomize
(`kubectl kustomize`), validate against Kubernetes' JSON schemas and hang together
(selectors, probes, autoscaling bounded by partitions, resources, security), and the
overlay changes what it means to change and nothing else."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from schemas.topics import CONTENT, EVENTS
from services.app.names import SERVICES
from tests.deploy.files import (
    K8S_BASE,
    K8S_PRODUCTION,
    container_environment,
    containers,
    find,
    load_dockerfile,
    pod_templates,
    rendered,
    workload_containers,
)
from tests.deploy.kustomize import Obj

# A widely deployed release and the newest schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
RENDERS = {"base": K8S_BASE, "production": K8S_PRODUCTION}
HTTP_SERVICES = ("ingest", "query")
CONSUMERS = {"embedder": CONTENT.partitions, "usermodel": EVENTS.partitions}
# The labels each kustomization adds (`labels`, includeSelectors: false).
BASE_LABELS = {"app.kubernetes.io/part-of": "attune", "app.kubernetes.io/managed-by": "kustomize"}
INSTANCE_LABELS = {"app.kubernetes.io/instance": "attune-production"}


def objects_of(name: str) -> list[Obj]:
    return rendered(RENDERS[name])


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def deployment(objects: list[Obj], service: str) -> Obj:
    return find(objects, "Deployment", f"attune-{service}")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G)?$")
_FACTORS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
_FACTORS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


def quantity(value: object) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"unparsed quantity {value!r}"
    return float(match[1]) * _FACTORS[match[2]]


_IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[^:/@]+))?(?:@(?P<digest>.+))?$")


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry:5000/name:tag@sha256:...`` -> (``registry:5000/name``, tag, digest)."""
    match = _IMAGE.match(image)
    assert match, f"unparsed image {image!r}"
    return match["name"], match["tag"], match["digest"]


def label_selectors(obj: Obj) -> list[dict[str, str]]:
    """Every label selector of an object: its own and its pods' spread constraints."""
    spec = obj.get("spec", {})
    found = []
    if obj["kind"] == "Service":
        found.append(spec["selector"])
    elif "selector" in spec:
        found.append(spec["selector"]["matchLabels"])
    for template in pod_templates(obj):
        for constraint in template["spec"].get("topologySpreadConstraints", []):
            found.append(constraint["labelSelector"]["matchLabels"])
    return found


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("attune", ("attune", None, None)),
        ("attune:0.1.0", ("attune", "0.1.0", None)),
        ("host:5000/team/attune", ("host:5000/team/attune", None, None)),
        ("host:5000/attune:1@sha256:ff", ("host:5000/attune", "1", "sha256:ff")),
    ],
)
def test_split_image(image: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_image(image) == parts


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("render_name", RENDERS)
def test_every_object_validates_against_the_kubernetes_schema(
    render_name: str, version: str
) -> None:
    objects = objects_of(render_name)
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            path = "/".join(str(p) for p in error.path)
            pytest.fail(f"{render_name} {name} at {path}: {error.message}")


@pytest.mark.parametrize("render_name", RENDERS)
def test_each_service_has_a_deployment_service_and_disruption_budget(render_name: str) -> None:
    objects = objects_of(render_name)
    assert {d["metadata"]["name"] for d in of_kind(objects, "Deployment")} == {
        f"attune-{s}" for s in SERVICES
    }
    for service in SERVICES:
        workload = deployment(objects, service)
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selects(workload["spec"]["selector"]["matchLabels"], pod_labels)
        assert pod_labels["app.kubernetes.io/component"] == service

        svc = find(objects, "Service", f"attune-{service}")
        assert selects(svc["spec"]["selector"], pod_labels)
        # the Service selects this Deployment's pods and no other's
        others = [d for d in of_kind(objects, "Deployment") if d is not workload]
        for other in others:
            assert not selects(
                svc["spec"]["selector"], other["spec"]["template"]["metadata"]["labels"]
            )
        port_names = {p["name"] for (c,) in [containers(workload)] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names

        pdb = find(objects, "PodDisruptionBudget", f"attune-{service}")
        assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
        assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable")


@pytest.mark.parametrize("render_name", RENDERS)
def test_http_services_autoscale_and_consumers_are_sized_by_partitions(render_name: str) -> None:
    objects = objects_of(render_name)
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    targets = {h["spec"]["scaleTargetRef"]["name"]: h for h in autoscalers}
    assert set(targets) == {f"attune-{s}" for s in HTTP_SERVICES}
    for service in HTTP_SERVICES:
        hpa = targets[f"attune-{service}"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        # The autoscaler owns the count: a `replicas` in the manifest would reset it.
        assert "replicas" not in deployment(objects, service)["spec"]
        assert hpa["spec"]["metrics"], "scales on something"
    for service, partitions in CONSUMERS.items():
        replicas = deployment(objects, service)["spec"]["replicas"]
        assert 1 <= replicas <= partitions, f"{service}: more consumers than partitions"
        assert deployment(objects, service)["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_production_runs_more_consumers_than_the_base() -> None:
    base, production = objects_of("base"), objects_of("production")
    for service in CONSUMERS:
        assert (
            deployment(production, service)["spec"]["replicas"]
            >= deployment(base, service)["spec"]["replicas"]
        )
    assert deployment(production, "embedder")["spec"]["replicas"] == CONTENT.partitions


@pytest.mark.parametrize("render_name", RENDERS)
def test_probes_ports_and_metrics_annotations(render_name: str) -> None:
    objects = objects_of(render_name)
    for service in SERVICES:
        workload = deployment(objects, service)
        (container,) = containers(workload)
        env = container_environment(objects, container)
        (port,) = container["ports"]
        assert port["containerPort"] == int(env["ATTUNE_HTTP_PORT"])
        assert port["name"] == "http"
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == env["ATTUNE_HTTP_PORT"]
        assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("render_name", RENDERS)
def test_every_container_has_requests_and_limits(render_name: str) -> None:
    for workload, container in workload_containers(objects_of(render_name)):
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, f"{workload['metadata']['name']} {resource}"
        threads = container_environment(objects_of(render_name), container).get(
            "ATTUNE_EMBEDDING_THREADS"
        )
        if threads is not None:  # onnxruntime's pool fits the CPU limit
            assert int(threads) <= quantity(resources["limits"]["cpu"])


@pytest.mark.parametrize("render_name", RENDERS)
def test_pods_meet_the_restricted_pod_security_standard(render_name: str) -> None:
    user = next(i.arguments for i in load_dockerfile().final_stage() if i.keyword == "USER")
    uid = int(user.split(":")[0])
    for workload in of_kind(objects_of(render_name), "Deployment") + of_kind(
        objects_of(render_name), "Job"
    ):
        (template,) = pod_templates(workload)
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid, "the image's USER"
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in containers(workload):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            # with a read-only root, /tmp is a volume
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


@pytest.mark.parametrize("render_name", RENDERS)
def test_containers_run_attune_with_the_service_matching_the_component(render_name: str) -> None:
    objects = objects_of(render_name)
    for workload, container in workload_containers(objects):
        assert "command" not in container, "the image's ENTRYPOINT (attune) is kept"
        name, tag, digest = split_image(container["image"])
        assert name.rsplit("/", 1)[-1] == "attune"
        assert (tag and tag != "latest") or digest, "a pinned image"
        args = container["args"]
        component = workload["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"
        ]
        if workload["kind"] == "Deployment":
            assert args == ["run", component]
            assert component in SERVICES
            env = container_environment(objects, container)
            assert env["OTEL_SERVICE_NAME"] == f"attune-{component}"
        else:
            assert workload["kind"] == "Job"
            assert args[:2] == ["topics", "create"]


def test_the_topics_job_replicates_for_a_production_cluster() -> None:
    job = find(objects_of("production"), "Job", "attune-topics")
    (container,) = containers(job)
    args = container["args"]
    factor = int(args[args.index("--replication-factor") + 1])
    assert factor >= 3
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"


def test_production_is_namespaced_uses_its_registry_and_ships_no_placeholder_secret() -> None:
    objects = objects_of("production")
    (namespace,) = of_kind(objects, "Namespace")
    name = namespace["metadata"]["name"]
    assert "namespace" not in namespace["metadata"], "a Namespace is cluster-scoped"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == name
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "attune-production"
    assert not of_kind(objects, "Secret"), "secrets come from the secret store"
    for _, container in workload_containers(objects):
        assert container["image"].startswith("registry.example.com/attune:")
    config = find(objects, "ConfigMap", "attune-config")["data"]
    assert config["ATTUNE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["ATTUNE_QDRANT_URL"].startswith("https://")


@pytest.mark.parametrize("render_name", RENDERS)
def test_labels_reach_every_object_and_pod_but_no_selector(render_name: str) -> None:
    """Selectors are immutable: a label added to one (`commonLabels`, `includeSelectors`)
    would make the next apply of a running Deployment fail."""
    for obj in objects_of(render_name):
        expected = dict(INSTANCE_LABELS) if render_name == "production" else {}
        if obj["kind"] != "Namespace":  # the overlay's own, untouched by the base's labels
            expected.update(BASE_LABELS)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert expected.items() <= obj["metadata"]["labels"].items(), name
        for template in pod_templates(obj):
            assert expected.items() <= template["metadata"]["labels"].items(), name
        component = obj["metadata"]["labels"].get("app.kubernetes.io/component")
        for selector in label_selectors(obj):
            assert selector == {
                "app.kubernetes.io/name": "attune",
                "app.kubernetes.io/component": component,
            }, name


def test_the_overlay_patches_merge_into_the_base() -> None:
    """The production patches change what they name and keep the rest of the object."""
    base, production = objects_of("base"), objects_of("production")
    # query: the container is merged by name, only its resources (and image) change
    (base_query,) = containers(deployment(base, "query"))
    (query,) = containers(deployment(production, "query"))
    assert quantity(query["resources"]["limits"]["memory"]) > quantity(
        base_query["resources"]["limits"]["memory"]
    )
    for key in ("resources", "image"):
        del base_query[key], query[key]
    assert query == base_query
    # the ConfigMap: overridden values, every base key kept
    base_config = find(base, "ConfigMap", "attune-config")["data"]
    config = find(production, "ConfigMap", "attune-config")["data"]
    assert set(base_config) <= set(config)
    for key in ("ATTUNE_KAFKA_ENABLE_IDEMPOTENCE", "ATTUNE_HTTP_PORT", "ATTUNE_VECTOR_INDEX"):
        assert config[key] == base_config[key], f"{key} is not the overlay's to change"
    # the autoscalers: higher floors and ceilings, the same metrics and behaviour
    for service in HTTP_SERVICES:
        base_hpa = find(base, "HorizontalPodAutoscaler", f"attune-{service}")["spec"]
        hpa = find(production, "HorizontalPodAutoscaler", f"attune-{service}")["spec"]
        assert hpa["minReplicas"] > base_hpa["minReplicas"]
        assert hpa["maxReplicas"] > base_hpa["maxReplicas"]
        for key in ("minReplicas", "maxReplicas"):
            del base_hpa[key], hpa[key]
        assert hpa == base_hpa


def test_the_base_secret_holds_only_marked_placeholders() -> None:
    secret = find(objects_of("base"), "Secret", "attune-secrets")
    assert "data" not in secret, "stringData placeholders, nothing encoded"
    assert set(secret["stringData"]) == {
        "ATTUNE_REDIS_URL",
        "ATTUNE_QDRANT_API_KEY",
        "ATTUNE_KAFKA_SASL_PASSWORD",
        "ATTUNE_WRITE_KEYS",
        "ATTUNE_READ_KEYS",
    }
    for key, value in secret["stringData"].items():
        assert "CHANGE-ME" in value.upper(), f"{key} is not a marked placeholder"
    # ...and no secret sits in the ConfigMap
    config = find(objects_of("base"), "ConfigMap", "attune-config")["data"]
    assert not set(config) & set(secret["stringData"])


def test_every_manifest_file_is_rendered() -> None:
    """A YAML file left out of every kustomization would never be applied."""
    for folder in (K8S_BASE, K8S_PRODUCTION):
        listed = (folder / "kustomization.yaml").read_text()
        for path in folder.glob("*.yaml"):
            if path.name != "kustomization.yaml":
                assert path.name in listed, f"{path} is not in {folder}/kustomization.yaml"
        for path in (folder / "patches").glob("*.yaml"):
            assert f"patches/{path.name}" in listed, f"{path} is not used"
