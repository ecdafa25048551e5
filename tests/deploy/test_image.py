"""deploy/docker/Dockerfile and .dockerignore, checked statically (no Docker engine
here), and the container health check script, run for real."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deploy.files import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    Dockerfile,
    dockerignore_rules,
    excluded_from_context,
    load_dockerfile,
    parse_dockerfile,
)

HEALTHCHECK_SCRIPT = ROOT / "deploy" / "docker" / "healthcheck.py"


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return load_dockerfile()


def runs(dockerfile: Dockerfile) -> list[str]:
    return [i.arguments for i in dockerfile.instructions if i.keyword == "RUN"]


def test_the_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile(
        "FROM a AS one\n# note\nRUN x \\\n  # inner\n  && y\nFROM b\nENV A=1 B='two words'\n"
    )
    assert parsed.stages == ["a AS one", "b"]
    run = parsed.instructions[1]
    assert (run.keyword, " ".join(run.arguments.split()), run.stage) == ("RUN", "x && y", 0)
    assert parsed.final_env() == {"A": "1", "B": "two words"}


def test_multi_stage_with_a_slim_runtime(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    names = [stage.split()[-1] for stage in dockerfile.stages if " AS " in stage.upper()]
    assert names[-1] == "runtime"
    final = dockerfile.final_stage()
    copies_from = [i.arguments for i in final if i.keyword == "COPY" and "--from=" in i.arguments]
    assert copies_from, "the runtime takes its venv and model from earlier stages"
    # no build tools in the runtime stage
    assert not [
        i for i in final if i.keyword == "RUN" and re.search(r"\buv\b|\bpip\b", i.arguments)
    ]


def test_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    users = [i.arguments for i in dockerfile.final_stage() if i.keyword == "USER"]
    assert users, "USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "numeric, so that runAsNonRoot can check it"


def test_installs_the_lock_with_the_pinned_uv(dockerfile: Dockerfile) -> None:
    commands = " ".join(runs(dockerfile))
    assert "uv sync --locked --no-dev" in commands.replace("/opt/uv/bin/", "")
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pinned = re.search(r"^UV_VERSION=(\S+)", setup, re.M)
    assert pinned
    assert f"ARG UV_VERSION={pinned[1]}" in DOCKERFILE.read_text()
    assert "redis-server" not in commands, "the image needs no Redis server"


def test_the_model_is_baked_in_at_build_time(dockerfile: Dockerfile) -> None:
    fetch = [run for run in runs(dockerfile) if "attune model fetch" in run]
    assert fetch, "`attune model fetch` runs at build time"
    assert "attune model check" in fetch[0]
    env = dockerfile.final_env()
    model_path = env["ATTUNE_EMBEDDING_MODEL_PATH"]
    copies = [i.arguments for i in dockerfile.final_stage() if i.keyword == "COPY"]
    assert any(c.split()[-1] == model_path for c in copies), "the model is copied there"
    assert env.get("HF_HUB_OFFLINE") == "1"


def test_entrypoint_is_attune_and_a_healthcheck_is_declared(dockerfile: Dockerfile) -> None:
    assert dockerfile.exec_form("ENTRYPOINT") == ["attune"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "attune" in scripts
    cmd = dockerfile.exec_form("CMD")
    assert cmd is not None
    (healthcheck,) = [i.arguments for i in dockerfile.final_stage() if i.keyword == "HEALTHCHECK"]
    assert 'CMD ["attune-healthcheck", "/healthz"]' in healthcheck
    copies = [i.arguments for i in dockerfile.final_stage() if i.keyword == "COPY"]
    assert any("healthcheck.py /usr/local/bin/attune-healthcheck" in c for c in copies)
    assert "EXPOSE 8000" in DOCKERFILE.read_text()
    assert dockerfile.final_env()["ATTUNE_HTTP_PORT"] == "8000"


@pytest.fixture(scope="module")
def ignore_rules() -> list:
    assert DOCKERIGNORE.is_file()
    return dockerignore_rules(DOCKERIGNORE.read_text())


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".tools/bin/uv",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/content",
        "tests/unit/test_settings.py",
        "services/__pycache__/cli.cpython-311.pyc",
        "services/common/__pycache__/settings.cpython-311.pyc",
        ".attune/vectors/segment",
        ".env",
        "docs/operations.md",
        "deploy/k8s/base/kustomization.yaml",
        "bench/results/run.json",
    ],
)
def test_dockerignore_keeps_out(path: str, ignore_rules: list) -> None:
    assert excluded_from_context(path, ignore_rules)


def test_dockerignore_lets_in_every_copy_source(dockerfile: Dockerfile, ignore_rules: list) -> None:
    sources: list[str] = []
    for instruction in dockerfile.instructions:
        if instruction.keyword != "COPY" or "--from=" in instruction.arguments:
            continue
        parts = [p for p in instruction.arguments.split() if not p.startswith("--")]
        sources.extend(parts[:-1])
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: missing"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        files = [f for f in files if "__pycache__" not in f.parts]
        assert files
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            assert not excluded_from_context(relative, ignore_rules), relative


# -- the health check script -----------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/healthz": 200, "/readyz": 503}.get(self.path, 404)
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@pytest.fixture
def probe_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def check(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT), *args],
        env={"ATTUNE_HTTP_PORT": str(port), "PATH": "/usr/bin:/bin", "http_proxy": "http://x:1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthcheck_passes_on_2xx_and_fails_otherwise(probe_server: int) -> None:
    assert check(probe_server).returncode == 0  # /healthz by default
    failed = check(probe_server, "/readyz")
    assert failed.returncode == 1
    assert "503" in failed.stderr


def test_healthcheck_fails_when_nothing_listens() -> None:
    # the port of a server that was just closed
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.server_close()
    assert check(port).returncode == 1


def test_healthcheck_script_is_executable() -> None:
    assert HEALTHCHECK_SCRIPT.stat().st_mode & 0o111
    assert HEALTHCHECK_SCRIPT.read_text().startswith("#!/usr/bin/env python3")
    assert Path(HEALTHCHECK_SCRIPT).suffix == ".py"
