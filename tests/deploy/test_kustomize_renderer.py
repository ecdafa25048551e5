"""The test-side Kustomize renderer does what kustomize does for the subset it supports,
and refuses the rest."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from tests.deploy.kustomize import (
    KustomizeError,
    json6902,
    render,
    split_image,
    strategic_merge,
)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: attune
          env:
            - {name: A, value: "1"}
            - {name: B, value: "2"}
          args: ["run", "query"]
        - name: sidecar
          image: registry.local:5000/tools/sidecar:1.0
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Namespace
metadata:
  name: prod
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))
    return folder


def base(tmp_path: Path) -> Path:
    return write(
        tmp_path / "base",
        {
            "kustomization.yaml": "resources: [app.yaml]\nimages: [{name: attune, newTag: '1'}]\n",
            "app.yaml": DEPLOYMENT,
        },
    )


def by_kind(objects: list[dict], kind: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_an_overlay_patches_its_base(tmp_path: Path) -> None:
    base(tmp_path)
    overlay = write(
        tmp_path / "overlay",
        {
            "kustomization.yaml": """\
                namespace: prod
                resources: [../base]
                labels:
                  - pairs: {tier: backend}
                    includeSelectors: false
                    includeTemplates: true
                replicas: [{name: web, count: 4}]
                images:
                  - {name: attune, newName: registry.example.com/attune, newTag: "2.0"}
                  - {name: registry.local:5000/tools/sidecar, digest: "sha256:abc"}
                patches:
                  - path: env.yaml
                  - target: {kind: Service, name: web}
                    patch: |
                      - {op: replace, path: /spec/ports/0/port, value: 8080}
                      - {op: add, path: /spec/type, value: ClusterIP}
                """,
            "env.yaml": """\
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: web}
                spec:
                  template:
                    spec:
                      containers:
                        - name: web
                          env:
                            - {name: B, value: "two"}
                            - {name: C, value: "3"}
                          args: ["run", "ingest"]
                """,
        },
    )
    objects = render(overlay)
    deployment, service = by_kind(objects, "Deployment"), by_kind(objects, "Service")
    namespace = by_kind(objects, "Namespace")
    web, sidecar = deployment["spec"]["template"]["spec"]["containers"]
    # strategic merge: containers and env merged by name, other lists replaced
    assert web["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert web["args"] == ["run", "ingest"]
    # images: the base's tag, then the overlay's name and tag; a registry port is kept
    assert web["image"] == "registry.example.com/attune:2.0"
    assert sidecar["image"] == "registry.local:5000/tools/sidecar@sha256:abc"
    # namespace on namespaced objects only
    assert deployment["metadata"]["namespace"] == "prod"
    assert "namespace" not in namespace["metadata"]
    # labels on metadata and pod templates, never on selectors
    assert deployment["metadata"]["labels"] == {"tier": "backend"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web", "tier": "backend"}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert service["spec"]["selector"] == {"app": "web"}
    assert deployment["spec"]["replicas"] == 4
    # JSON 6902
    assert service["spec"]["ports"] == [{"port": 8080}]
    assert service["spec"]["type"] == "ClusterIP"


def test_patch_delete_removes_the_object(tmp_path: Path) -> None:
    base(tmp_path)
    overlay = write(
        tmp_path / "overlay",
        {
            "kustomization.yaml": "resources: [../base]\npatches: [{path: drop.yaml}]\n",
            "drop.yaml": "$patch: delete\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
        },
    )
    assert sorted(o["kind"] for o in render(overlay)) == ["Deployment", "Namespace"]


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("resources: [app.yaml]\ncommonLabels: {a: b}\n", "unsupported fields"),
        ("resources: [app.yaml]\nconfigMapGenerator: []\n", "unsupported fields"),
        ("resources: [missing.yaml]\n", "not found"),
        ("resources: [app.yaml, app.yaml]\n", "defined twice"),
        ("resources: [app.yaml]\nreplicas: [{name: nope, count: 2}]\n", "no workload"),
        (
            "resources: [app.yaml]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n",
            "includeSelectors",
        ),
        (
            "resources: [app.yaml]\npatches:\n  - patch: |\n      apiVersion: v1\n"
            "      kind: Service\n      metadata: {name: other}\n",
            "matched nothing",
        ),
    ],
)
def test_what_it_does_not_support_is_refused(
    tmp_path: Path, kustomization: str, message: str
) -> None:
    folder = write(tmp_path, {"kustomization.yaml": kustomization, "app.yaml": DEPLOYMENT})
    with pytest.raises(KustomizeError, match=message):
        render(folder)


def test_strategic_merge_null_deletes_and_plain_lists_replace() -> None:
    target = {"a": {"b": 1, "c": 2}, "items": [1, 2, 3]}
    strategic_merge(target, {"a": {"c": None, "d": 4}, "items": [9]})
    assert target == {"a": {"b": 1, "d": 4}, "items": [9]}


def test_json6902_remove_and_append() -> None:
    target = {"spec": {"list": [1, 2], "gone": True}}
    json6902(target, {"op": "add", "path": "/spec/list/-", "value": 3})
    json6902(target, {"op": "remove", "path": "/spec/gone"})
    assert target == {"spec": {"list": [1, 2, 3]}}
    with pytest.raises(KustomizeError, match="does not exist"):
        json6902(target, {"op": "replace", "path": "/spec/absent", "value": 1})
    with pytest.raises(KustomizeError, match="unsupported"):
        json6902(target, {"op": "move", "from": "/spec/list", "path": "/spec/x"})


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
