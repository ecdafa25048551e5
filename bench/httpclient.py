"""The load generator's HTTP/1.1 client: keep-alive connections over asyncio streams (no
client library in the way: a few microseconds per request), to loopback addresses only;
and the tally of what came back."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class HttpError(Exception):
    """The server closed the connection or answered something unreadable."""


def encode_request(
    method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """One HTTP/1.1 request, ready to write (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, content length or None, chunked?, connection close?) of a response head."""
    if not head.startswith(b"HTTP/1.") or len(head) < 12:
        raise HttpError(f"not an HTTP response: {head[:40]!r}")
    status = int(head[9:12])
    lower = head.lower()
    length = None
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.find(b"\r\n", at + 2)
        length = int(lower[at + 17 : end].strip())
    chunked = b"\r\ntransfer-encoding: chunked" in lower
    close = b"\r\nconnection: close" in lower
    return status, length, chunked, close


class Connection:
    """One keep-alive connection; reconnects after an error or a ``Connection: close``."""

    def __init__(self, host: str, port: int) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the load generator only talks to loopback, not {host!r}")
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """The stream, and whether it was open already (a server may have closed it)."""
        if self._reader is not None and self._reader.at_eof():
            self.close()  # the server closed it while idle (its keep-alive timeout)
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            return self._reader, self._writer, False
        return self._reader, self._writer, True

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        reader, writer, reused = await self._connect()
        try:
            try:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                stale = not isinstance(error, asyncio.IncompleteReadError) or not error.partial
                if not (reused and stale):
                    raise
                # An idle connection the server closed as we reused it: nothing was
                # answered, so the request goes once more on a new connection, as HTTP
                # clients do.
                self.close()
                reader, writer, _ = await self._connect()
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
            status, length, chunked, close = parse_head(head)
            if length is not None:
                body = await reader.readexactly(length)
            elif chunked:
                body = await _read_chunked(reader)
            else:
                body = b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            self.close()
            raise HttpError(f"{type(error).__name__}: {error}") from error
        except BaseException:
            self.close()  # a cancelled or timed-out request leaves the stream unusable
            raise
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    matched: int = 0
    last_done: float = 0.0


def failures(result: dict[str, Any]) -> dict[str, int]:
    """What failed in a closed-loop run, warm-up included: answers outside 2xx by status
    and transport errors or timeouts by kind."""
    found: Counter[str] = Counter()
    for prefix in ("", "warmup_"):
        for status, count in result.get(f"{prefix}statuses", {}).items():
            if not str(status).startswith("2"):
                found[str(status)] += count
        for error, count in result.get(f"{prefix}errors", {}).items():
            found[error] += count
    return dict(found)


class Pool:
    """Up to ``size`` keep-alive connections to one server, shared by tasks."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self._idle: list[Connection] = [Connection(host, port) for _ in range(size)]
        self._free = asyncio.Semaphore(size)

    async def send(self, raw: bytes, timeout_s: float) -> tuple[int, bytes]:
        async with self._free:
            connection = self._idle.pop()
            try:
                async with asyncio.timeout(timeout_s):
                    return await connection.send(raw)
            finally:
                self._idle.append(connection)

    def close(self) -> None:
        for connection in self._idle:
            connection.close()


def encoded(spec_requests: list[dict[str, Any]], host: str) -> list[bytes]:
    """The requests of a spec (method, path, headers, body), ready to write."""
    return [
        encode_request(
            r["method"], r["path"], host, r.get("headers"), (r.get("body") or "").encode()
        )
        for r in spec_requests
    ]


__all__ = [
    "LOOPBACK", "Connection", "HttpError", "Pool", "Tally", "encode_request", "encoded",
    "failures", "parse_head",
]  # fmt: skip
