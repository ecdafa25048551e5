"""Compressed request bodies: analytics SDKs may send ``Content-Encoding: gzip``.

The shared middleware limits what arrives on the wire; :class:`IngestRequest` also
limits what it inflates to, so a small gzip bomb gets 413 like a large body.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

_GZIP = frozenset({"gzip", "x-gzip"})
_IDENTITY = frozenset({"", "identity"})


class BodyTooLarge(ValueError):
    """The body inflates to more than the limit."""


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate gzip ``data`` (one or more members); raise :class:`BodyTooLarge` past
    ``limit`` bytes and ``ValueError`` for data that is not complete gzip."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, limit - len(out) + 1)
        except zlib.error as error:
            raise ValueError(f"invalid gzip data: {error}") from None
        if len(out) > limit:
            raise BodyTooLarge(f"body inflates to over {limit} bytes")
        if not inflater.eof:
            raise ValueError("invalid gzip data: truncated")
        data = inflater.unused_data
    return bytes(out)


class IngestRequest(Request):
    """A request whose ``body()`` is inflated when it says ``Content-Encoding: gzip``."""

    async def body(self) -> bytes:
        if not hasattr(self, "_inflated"):
            self._inflated = self._inflate(await super().body())
        return self._inflated

    def _inflate(self, raw: bytes) -> bytes:
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding in _IDENTITY:
            return raw
        if encoding not in _GZIP:
            raise HTTPException(415, f"unsupported Content-Encoding {encoding!r}; use gzip")
        limit: int = self.app.state.settings.max_body_bytes
        try:
            return gunzip(raw, limit)
        except BodyTooLarge as error:
            raise HTTPException(413, str(error)) from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None


class IngestRoute(APIRoute):
    """Routes whose handlers see an :class:`IngestRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def inflating_handler(request: Request) -> Response:
            return await handler(IngestRequest(request.scope, request.receive))

        return inflating_handler


__all__ = ["BodyTooLarge", "IngestRequest", "IngestRoute", "gunzip"]
