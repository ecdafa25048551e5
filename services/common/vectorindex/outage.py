"""Riding out a vector-index outage: which errors mean the index is unreachable, and an
index whose writes wait for it to come back.

Qdrant Edge runs in process and has no such errors. qdrant-client wraps transport
failures (httpx) in ``ResponseHandlingException`` and reports HTTP statuses as
``UnexpectedResponse``; 5xx and 429 are transient, other statuses are not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from services.common.retry import retry_through_outage
from services.common.vectorindex.base import ItemWrite, StoredItem, VectorIndex

T = TypeVar("T")


class IndexUnavailable(Exception):
    """The vector index did not answer (connection refused, timeout, 5xx): retried."""


def is_transient_index_error(error: BaseException) -> bool:
    """A vector-index error worth retrying: the server is unreachable or overloaded."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    import httpx  # imported here: only a failing server-index call gets this far

    if isinstance(error, httpx.TransportError):
        return True
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(error, ResourceExhaustedResponse):
        return True
    if isinstance(error, ResponseHandlingException):
        return isinstance(error.source, httpx.TransportError | ConnectionError | TimeoutError)
    if isinstance(error, UnexpectedResponse):
        return error.status_code is not None and (
            error.status_code >= 500 or error.status_code == 429
        )
    return False


async def with_index_retries(operation: Callable[[], Awaitable[T]]) -> T:
    """Run an index operation, retried with capped backoff for as long as the index is
    unreachable (shown in ``attune_dependency_up{dependency="vector_index"}``); any
    other error propagates (the batch is not committed)."""

    async def attempt() -> T:
        try:
            return await operation()
        except Exception as error:
            if is_transient_index_error(error):
                raise IndexUnavailable(f"{type(error).__name__}: {error}") from error
            raise

    return await retry_through_outage(
        attempt, lambda error: isinstance(error, IndexUnavailable), dependency="vector_index"
    )


class OutageTolerantIndex:
    """A :class:`VectorIndex` whose writes (items and meta records, and the reads a
    writer plans with: meta records, the versions a tombstone without one deletes) wait
    out an outage instead of failing; everything else is the wrapped index's. What a
    consumer writes through: an outage pauses it, and the batch's embeddings are not
    computed again."""

    def __init__(self, inner: VectorIndex) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def apply(self, writes: Sequence[ItemWrite]) -> None:
        await with_index_retries(lambda: self.inner.apply(writes))

    async def retrieve(
        self, tenant: str, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredItem]:
        return await with_index_retries(
            lambda: self.inner.retrieve(tenant, item_ids, with_vectors=with_vectors)
        )

    async def read_meta(self, key: str) -> dict[str, Any] | None:
        return await with_index_retries(lambda: self.inner.read_meta(key))

    async def write_meta(self, key: str, value: dict[str, Any]) -> None:
        await with_index_retries(lambda: self.inner.write_meta(key, value))

    async def read_metas(self, prefix: str) -> dict[str, dict[str, Any]]:
        return await with_index_retries(lambda: self.inner.read_metas(prefix))

    async def write_metas(self, values: Mapping[str, dict[str, Any]]) -> None:
        await with_index_retries(lambda: self.inner.write_metas(values))


def tolerating_outages(index: VectorIndex) -> VectorIndex:
    """``index`` with writes that wait out an outage (see :class:`OutageTolerantIndex`)."""
    if isinstance(index, OutageTolerantIndex):
        return index
    return OutageTolerantIndex(index)


__all__ = [
    "IndexUnavailable",
    "OutageTolerantIndex",
    "is_transient_index_error",
    "tolerating_outages",
    "with_index_retries",
]
