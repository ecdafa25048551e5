"""The shape of the code that import-linter cannot see: what a process loads."""

from __future__ import annotations

import subprocess
import sys

CONSUMER_CODE = (
    "services.usermodel",
    "services.embedder",
    "services.common.consumer",
    "services.common.records",
)


def _loaded_after(imports: str, prefixes: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys\n{imports}\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_a_query_process_loads_no_consumer_code() -> None:
    """What `attune run query` imports: the composition root and the query service."""
    loaded = _loaded_after(
        "import services.app.bootstrap, services.query", (*CONSUMER_CODE, "services.ingest")
    )
    assert loaded == []


def test_the_cli_loads_nothing_heavy_until_a_command_runs() -> None:
    loaded = _loaded_after(
        "import services.cli",
        ("services.app.bootstrap", "fastembed", "qdrant_edge", "bench.relevance.runner"),
    )
    assert loaded == []


def test_the_cli_runs_without_bench_as_in_the_service_image() -> None:
    """The image (deploy/docker/Dockerfile) ships schemas/ and services/, not bench/."""
    code = (
        "import sys\nsys.modules['bench'] = None\n"
        "from typer.testing import CliRunner\nfrom services.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "print(result.exit_code, 'run' in result.output, 'bench' in result.output)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "True", "False"]
