"""The real embedding model, loaded offline from the folder the set-up assembled."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import numpy as np
import pytest

from services.app.model_store import model_problems
from services.common.embedding import Embedder, EmbeddingModelError
from services.common.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    settings = Settings()
    folder = settings.resolved_embedding_model_path
    assert folder is not None
    assert not model_problems(folder), f"run `attune model fetch` first: {model_problems(folder)}"
    loaded = Embedder.from_settings(settings)
    yield loaded
    loaded.close()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt other than loopback fails, as on a machine with no hub."""
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else ""
        if host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            raise OSError(f"network disabled in this test: {address}")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


def test_model_loads_offline_and_embeds(no_network: None) -> None:
    embedder = Embedder.from_settings(Settings())
    try:
        assert embedder.dimension == 384
        assert os.environ.get("HF_HUB_OFFLINE") == "1"
    finally:
        embedder.close()


async def test_related_sentences_score_higher_than_unrelated(embedder: Embedder) -> None:
    vectors = await embedder.embed_documents(
        [
            "A detective hunts a serial killer through a rainy city.",
            "A police investigator tracks down a murderer.",
            "A recipe for a light lemon sponge cake.",
        ]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    related, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert related > unrelated + 0.3

    query = await embedder.embed_query("crime thriller")
    scores = vectors @ query
    assert scores.argmax() in (0, 1)
    assert scores[2] == scores.min()


async def test_empty_batch_gives_an_empty_matrix(embedder: Embedder) -> None:
    vectors = await embedder.embed_documents([])
    assert vectors.shape == (0, 384)


def test_a_missing_model_folder_names_the_fix(tmp_path: object) -> None:
    with pytest.raises(EmbeddingModelError, match="attune model fetch"):
        Embedder.load("sentence-transformers/all-MiniLM-L6-v2", tmp_path / "nothing")  # type: ignore[operator]
