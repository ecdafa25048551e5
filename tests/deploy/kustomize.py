"""Render a Kustomize tree with the real tool: ``kubectl kustomize DIR`` (or a standalone
``kustomize build DIR``), exactly what ``kubectl apply -k DIR`` would send."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

Obj = dict[str, Any]


def kustomize_command() -> list[str]:
    """The command that renders a kustomization, without its directory argument.

    Fails the calling test (never skips it) when there is no tool: the machines that run
    these tests carry kubectl, so a missing one is a broken machine, not a reason to pass.
    """
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build"]
    pytest.fail(
        "neither kubectl nor kustomize is on PATH: install kubectl (>= 1.27, which bundles "
        "Kustomize v5) to render deploy/k8s",
        pytrace=False,
    )


def render(directory: Path) -> list[Obj]:
    """The objects the kustomization in ``directory`` renders to, in kustomize's order."""
    command = [*kustomize_command(), str(directory)]
    try:
        result = subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        pytest.fail(f"`{' '.join(command)}` failed:\n{error.stderr}", pytrace=False)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


__all__ = ["Obj", "kustomize_command", "render"]
