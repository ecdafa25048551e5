"""Reading the deployment files the way their tools would: the compose file (with
``${VAR:-default}`` interpolation), the Dockerfile (instructions, stages, ENV),
``.dockerignore`` (Docker's matching rules), the Kubernetes manifests (rendered by the
real kustomize, see :mod:`tests.deploy.kustomize`), and the environment each container
ends up with."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.kustomize import Obj, render

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_BASE = ROOT / "deploy" / "k8s" / "base"
K8S_PRODUCTION = ROOT / "deploy" / "k8s" / "overlays" / "production"
OBSERVABILITY = ROOT / "deploy" / "observability"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# -- compose ---------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
)


def interpolate(value: Any) -> Any:
    """Compose's interpolation with an empty environment: ``${X:-d}`` -> ``d``."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            return match["default"] or ""

        return _INTERPOLATION.sub(substitute, value)
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    return value


@cache
def _compose_text() -> str:
    return COMPOSE_FILE.read_text()


def load_compose(*, interpolated: bool = True) -> dict[str, Any]:
    """compose.yaml as Compose sees it (YAML merge keys resolved)."""
    data = yaml.safe_load(_compose_text())
    return interpolate(data) if interpolated else data


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def as_argv(command: Any) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


# -- Dockerfile ------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    stages: list[str] = field(default_factory=list)  # each FROM line's arguments

    def final_stage(self) -> list[Instruction]:
        last = len(self.stages) - 1
        return [i for i in self.instructions if i.stage == last]

    def exec_form(self, keyword: str) -> list[str] | None:
        """The final stage's last ENTRYPOINT/CMD as an argv (JSON exec form)."""
        found = [i for i in self.final_stage() if i.keyword == keyword]
        if not found:
            return None
        arguments = found[-1].arguments
        if not arguments.startswith("["):
            raise ValueError(f"{keyword} should use the exec (JSON) form: {arguments}")
        return [str(part) for part in json.loads(arguments)]

    def final_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for instruction in self.final_stage():
            if instruction.keyword == "ENV":
                env.update(parse_env(instruction.arguments))
        return env


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    dockerfile = Dockerfile(instructions=[])
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            dockerfile.stages.append(arguments.strip())
        stage = len(dockerfile.stages) - 1
        dockerfile.instructions.append(Instruction(keyword, arguments.strip(), stage))
    return dockerfile


def parse_env(arguments: str) -> dict[str, str]:
    parts = shlex.split(arguments)
    if parts and "=" not in parts[0]:  # legacy form: ENV KEY value with spaces
        return {parts[0]: " ".join(parts[1:])}
    return dict(part.split("=", 1) for part in parts)


def load_dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


# -- .dockerignore ---------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus ``**``) as a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + "$")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def excluded_from_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``path`` (relative, with /) out of the build context: the
    last rule matching the path or one of its parent folders decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


# -- Kubernetes --------------------------------------------------------------------------


@cache
def _rendered(directory: Path) -> tuple[str, ...]:
    return tuple(json.dumps(obj) for obj in render(directory))


def rendered(directory: Path) -> list[Obj]:
    """The render of a kustomization (a fresh copy each call: tests may not share it)."""
    return [json.loads(obj) for obj in _rendered(directory)]


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def base_secret_keys() -> set[str]:
    """The keys of the Secret attune-secrets: the contract a production Secret fulfils."""
    secret = find(rendered(K8S_BASE), "Secret", "attune-secrets")
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


def container_environment(objects: list[Obj], container: Obj) -> dict[str, str]:
    """What a container's environment holds, ConfigMaps and Secrets resolved. A Secret
    that is not in the render (production: it comes from the secret store) contributes
    the keys of the base's placeholder Secret, with placeholder values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = find(objects, "ConfigMap", source["configMapRef"]["name"])
            env.update({k: str(v) for k, v in config.get("data", {}).items()})
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            secrets = [
                o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name
            ]
            if secrets:
                env.update({k: str(v) for k, v in secrets[0].get("stringData", {}).items()})
            else:
                base = find(rendered(K8S_BASE), "Secret", name)
                env.update({k: str(v) for k, v in base.get("stringData", {}).items()})
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
    return env


WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


def pod_templates(obj: Obj) -> list[Obj]:
    """The pod templates of a workload (a CronJob's is one level deeper)."""
    spec = obj.get("spec", {})
    if obj["kind"] in WORKLOAD_KINDS and "template" in spec:
        return [spec["template"]]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    return []


def containers(obj: Obj) -> list[Obj]:
    """The init containers and containers of a workload's pod templates."""
    found: list[Obj] = []
    for template in pod_templates(obj):
        pod = template.get("spec", {})
        found.extend(pod.get("initContainers", []))
        found.extend(pod.get("containers", []))
    return found


def workload_containers(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    return [(obj, container) for obj in objects for container in containers(obj)]


__all__ = [
    "COMPOSE_FILE",
    "DOCKERFILE",
    "DOCKERIGNORE",
    "K8S_BASE",
    "K8S_PRODUCTION",
    "OBSERVABILITY",
    "ROOT",
    "SCHEMAS",
    "Dockerfile",
    "as_argv",
    "base_secret_keys",
    "compose_environment",
    "container_environment",
    "containers",
    "dockerignore_rules",
    "excluded_from_context",
    "find",
    "interpolate",
    "load_compose",
    "load_dockerfile",
    "parse_dockerfile",
    "parse_env",
    "pod_templates",
    "rendered",
    "workload_containers",
]
