"""A small Kustomize renderer: the subset that deploy/k8s uses, and nothing more.

There is no kustomize binary here, so the tests render the manifests themselves. The
subset, applied in kustomize's order:

- ``resources``: YAML files (several documents each) and directories holding a
  ``kustomization.yaml`` (rendered first, recursively);
- ``patches``: ``path`` or inline ``patch``; a mapping is a strategic-merge patch (its
  target is the object of the same kind and name, or ``target``; ``$patch: delete`` at
  the top removes the object), a list is JSON 6902 (``add``/``replace``/``remove``,
  with a ``target`` of kind and name);
- ``namespace``: set on every namespaced object;
- ``labels`` with ``includeSelectors: false``: on every object's metadata, and on pod
  templates with ``includeTemplates: true``;
- ``replicas``: ``name`` and ``count``;
- ``images``: ``name`` with ``newName``, ``newTag``, ``digest``.

Anything else in a kustomization (``commonLabels``, generators, name prefixes, ...)
raises :class:`KustomizeError` rather than being silently ignored, so that the tests can
never pass on a render that kustomize would not produce. Strategic merge knows the
merge keys of the lists it may meet in pod specs (containers and env by name, volume
mounts by mount path, ...); any other list is replaced, as kustomize does for lists
without a merge key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "patches", "namespace", "labels", "replicas", "images"}
)

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)

# Strategic-merge keys of the lists a patch of a pod spec may meet.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
SCALABLE_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not support, or is wrong."""


def render(directory: Path) -> list[Obj]:
    """Render the kustomization in ``directory`` into a list of Kubernetes objects."""
    directory = Path(directory)
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(kustomization_file.read_text()) or {}
    unsupported = set(spec) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{kustomization_file}: unsupported fields {sorted(unsupported)}")

    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(render(path))
        elif path.is_file():
            objects.extend(load_documents(path))
        else:
            raise KustomizeError(f"{kustomization_file}: resource {entry} not found")
    _check_unique(objects, kustomization_file)

    for patch in spec.get("patches", []):
        objects = apply_patch(objects, patch, directory)
    if "namespace" in spec:
        set_namespace(objects, spec["namespace"])
    for label_set in spec.get("labels", []):
        add_labels(objects, label_set)
    for replica in spec.get("replicas", []):
        set_replicas(objects, replica)
    for image in spec.get("images", []):
        set_image(objects, image)
    return objects


def load_documents(path: Path) -> list[Obj]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in documents:
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= set(doc):
            raise KustomizeError(f"{path}: every document needs apiVersion, kind and metadata")
    return documents


def object_id(obj: Obj) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _check_unique(objects: list[Obj], where: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = object_id(obj)
        if key in seen:
            raise KustomizeError(f"{where}: {key} defined twice")
        seen.add(key)


# -- patches ---------------------------------------------------------------------------


def _matches(obj: Obj, target: Obj) -> bool:
    unsupported = set(target) - {"group", "version", "kind", "name"}
    if unsupported:
        raise KustomizeError(f"unsupported patch target fields {sorted(unsupported)}")
    group, _, version = obj["apiVersion"].rpartition("/")
    return (
        target.get("kind", obj["kind"]) == obj["kind"]
        and target.get("name", obj["metadata"]["name"]) == obj["metadata"]["name"]
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def apply_patch(objects: list[Obj], entry: Obj, directory: Path) -> list[Obj]:
    unsupported = set(entry) - {"path", "patch", "target"}
    if unsupported:
        raise KustomizeError(f"unsupported patch fields {sorted(unsupported)}")
    if "path" in entry:
        body = yaml.safe_load((directory / entry["path"]).read_text())
    elif "patch" in entry:
        body = yaml.safe_load(entry["patch"])
    else:
        raise KustomizeError("a patch needs `path` or `patch`")

    if isinstance(body, list):  # JSON 6902
        target = entry.get("target")
        if not target or "kind" not in target or "name" not in target:
            raise KustomizeError("a JSON 6902 patch needs a target with kind and name")
        hits = [obj for obj in objects if _matches(obj, target)]
        if len(hits) != 1:
            raise KustomizeError(f"JSON 6902 patch target {target} matched {len(hits)} objects")
        for operation in body:
            json6902(hits[0], operation)
        return objects

    if not isinstance(body, dict):
        raise KustomizeError(f"a patch must be a mapping or a list, not {type(body).__name__}")
    target = entry.get("target") or {
        "kind": body["kind"],
        "name": body["metadata"]["name"],
    }
    hits = [obj for obj in objects if _matches(obj, target)]
    if not hits:
        raise KustomizeError(f"strategic-merge patch target {target} matched nothing")
    body = copy.deepcopy(body)
    directive = body.pop("$patch", None)
    if directive == "delete":
        return [obj for obj in objects if not any(obj is hit for hit in hits)]
    if directive is not None:
        raise KustomizeError(f"unsupported $patch: {directive}")
    for hit in hits:
        strategic_merge(hit, body)
    return objects


def strategic_merge(base: Obj, patch: Obj) -> None:
    """Merge ``patch`` into ``base`` in place (maps recursively, keyed lists by key)."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"unsupported strategic-merge directive {key}")
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            strategic_merge(base[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(base.get(key), list):
            merge_key = MERGE_KEYS[key]
            merged = base[key]
            for item in value:
                if not isinstance(item, dict) or merge_key not in item:
                    raise KustomizeError(f"items of {key} need their merge key {merge_key}")
                existing = [m for m in merged if m.get(merge_key) == item[merge_key]]
                if existing:
                    strategic_merge(existing[0], item)
                else:
                    merged.append(copy.deepcopy(item))
        else:
            base[key] = copy.deepcopy(value)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json6902(obj: Obj, operation: Obj) -> None:
    op, parts = operation.get("op"), _pointer(operation.get("path", ""))
    if op not in ("add", "replace", "remove"):
        raise KustomizeError(f"unsupported JSON 6902 op {op!r}")
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if isinstance(parent, list):
        if op == "add":
            index = len(parent) if last == "-" else int(last)
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            parent[int(last)] = copy.deepcopy(operation["value"])
        else:
            del parent[int(last)]
        return
    if op in ("replace", "remove") and last not in parent:
        raise KustomizeError(f"JSON 6902 {op}: {operation['path']} does not exist")
    if op == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(operation["value"])


# -- transformers ----------------------------------------------------------------------


def set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            obj["metadata"]["namespace"] = namespace


def pod_templates(obj: Obj) -> list[Obj]:
    """The pod templates of a workload (a CronJob's is one level deeper)."""
    spec = obj.get("spec", {})
    if obj["kind"] in WORKLOAD_KINDS and "template" in spec:
        return [spec["template"]]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    return []


def add_labels(objects: list[Obj], label_set: Obj) -> None:
    unsupported = set(label_set) - {"pairs", "includeSelectors", "includeTemplates"}
    if unsupported:
        raise KustomizeError(f"unsupported labels fields {sorted(unsupported)}")
    if label_set.get("includeSelectors", False):
        raise KustomizeError("labels with includeSelectors: true are not supported")
    pairs = {str(k): str(v) for k, v in label_set["pairs"].items()}
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        if label_set.get("includeTemplates", False):
            for template in pod_templates(obj):
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def set_replicas(objects: list[Obj], entry: Obj) -> None:
    hits = [
        obj
        for obj in objects
        if obj["kind"] in SCALABLE_KINDS and obj["metadata"]["name"] == entry["name"]
    ]
    if not hits:
        raise KustomizeError(f"replicas: no workload named {entry['name']}")
    for obj in hits:
        obj["spec"]["replicas"] = int(entry["count"])


_IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[^:/@]+))?(?:@(?P<digest>.+))?$")


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry:5000/name:tag@sha256:...`` -> (``registry:5000/name``, tag, digest)."""
    match = _IMAGE.match(image)
    if match is None:
        raise KustomizeError(f"cannot parse image {image!r}")
    return match["name"], match["tag"], match["digest"]


def containers(obj: Obj) -> list[Obj]:
    found: list[Obj] = []
    for template in pod_templates(obj):
        pod = template.get("spec", {})
        found.extend(pod.get("initContainers", []))
        found.extend(pod.get("containers", []))
    return found


def set_image(objects: list[Obj], entry: Obj) -> None:
    unsupported = set(entry) - {"name", "newName", "newTag", "digest"}
    if unsupported:
        raise KustomizeError(f"unsupported images fields {sorted(unsupported)}")
    for obj in objects:
        for container in containers(obj):
            name, tag, digest = split_image(container["image"])
            if name != entry["name"]:
                continue
            name = entry.get("newName", name)
            if "digest" in entry:
                tag, digest = None, entry["digest"]
            elif "newTag" in entry:
                tag, digest = str(entry["newTag"]), None
            container["image"] = (
                name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            )


__all__ = [
    "KustomizeError",
    "add_labels",
    "apply_patch",
    "containers",
    "json6902",
    "load_documents",
    "pod_templates",
    "render",
    "set_image",
    "set_namespace",
    "set_replicas",
    "split_image",
    "strategic_merge",
]
