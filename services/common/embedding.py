"""Text embeddings with fastembed (ONNX on the CPU), kept off the event loop.

``embed()`` in fastembed is a synchronous generator; every call here runs on a
dedicated worker thread. Documents and queries have a thread each, so a query
never waits behind a large document batch.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from fastembed import TextEmbedding

    from services.common.settings import Settings

Vectors = npt.NDArray[np.float32]


class EmbeddingModelError(RuntimeError):
    """The configured model cannot be loaded; the message says what to do."""


class Embedder:
    def __init__(self, model: TextEmbedding, model_name: str, batch_size: int = 32) -> None:
        self.model = model
        self.model_name = model_name
        self.batch_size = batch_size
        self._documents = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-docs")
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-query")
        self.dimension = int(self._embed_now(["dimension probe"]).shape[1])

    @classmethod
    def load(
        cls,
        model_name: str,
        model_path: Path | None,
        *,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> Embedder:
        """Load the model (a blocking call: run it at start-up, not per request)."""
        from fastembed import TextEmbedding

        if model_path is not None:
            if not model_path.is_dir() or not any(model_path.iterdir()):
                raise EmbeddingModelError(
                    f"no model files in {model_path}: run `attune model fetch` (default model) "
                    "or point ATTUNE_EMBEDDING_MODEL_PATH at the model's folder"
                )
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub
        try:
            model = TextEmbedding(
                model_name=model_name,
                specific_model_path=str(model_path) if model_path else None,
                threads=threads,
            )
        except Exception as error:
            raise EmbeddingModelError(
                f"cannot load embedding model {model_name}: {error}"
            ) from error
        return cls(model, model_name, batch_size)

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls.load(
            settings.embedding_model,
            settings.resolved_embedding_model_path,
            threads=settings.embedding_threads,
            batch_size=settings.embedding_batch_size,
        )

    def _embed_now(self, texts: Sequence[str]) -> Vectors:
        vectors = list(self.model.embed(list(texts), batch_size=self.batch_size))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """One row per text, L2-normalised (for cosine similarity)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._documents, self._embed_now, texts)

    async def embed_query(self, text: str) -> Vectors:
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._queries, self._embed_now, [text])
        query: Vectors = rows[0]
        return query

    def close(self) -> None:
        self._documents.shutdown(wait=False, cancel_futures=True)
        self._queries.shutdown(wait=False, cancel_futures=True)


__all__ = ["Embedder", "EmbeddingModelError", "Vectors"]
