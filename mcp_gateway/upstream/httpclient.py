"""A small HTTP/1.1 keep-alive client for the tools/call hot path.

Why not a library: forwarding a call through aiohttp cost about 0.25 ms of CPU
per request here, about half of the gateway's whole budget; this client (an
asyncio protocol around the httptools parser, the same parser uvicorn uses)
costs a fraction of that. It is deliberately narrow: one origin per pool,
requests with a known body, no redirects, no proxies, no compression.

What it does own, and is tested for: keep-alive pooling with a bounded number
of connections, content-length and chunked responses, streamed bodies (SSE)
with back-pressure, TLS for https origins, connect timeouts, servers that
close idle connections (detected at once, and one retry if a reused
connection dies before any byte of the response), and ``Connection: close``.
Callers bound each request's total time with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 1024 * 1024
"""Buffered response bytes above which we stop reading the socket until the caller catches up."""


class HttpClientError(Exception):
    """A transport-level failure (connect, reset, malformed response)."""


class ConnectionLost(HttpClientError):
    """The connection died. ``before_response`` is True when no byte of the response had arrived."""

    def __init__(self, message: str, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request/response at a time."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self._headers_ready: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._data_ready: asyncio.Event | None = None
        self._complete = False
        self._got_bytes = False
        self._error: BaseException | None = None
        self._paused_reading = False
        self._write_paused = False
        self._write_waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.keep_alive = False
        self.headers: dict[str, str] = {}

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpClientError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        with contextlib.suppress(httptools.HttpParserError):
            self.parser.feed_data(b"")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if not self._complete:
            reason = f"connection lost: {exc}" if exc else "connection closed by the server"
            self._fail(ConnectionLost(reason, before_response=not self._got_bytes))
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self._headers_ready is not None and not self._headers_ready.done():
            self._headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and self.transport is not None and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()
        if self._data_ready is not None:
            self._data_ready.set()

    def on_message_complete(self) -> None:
        self._complete = True
        if self._data_ready is not None:
            self._data_ready.set()

    # -- used by the pool and the response -----------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._headers_ready is not None and not self._headers_ready.done():
            self._headers_ready.set_exception(error)
        if self._data_ready is not None:
            self._data_ready.set()
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def send(self, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._headers_ready = loop.create_future()
        self._data_ready = asyncio.Event()
        self._chunks.clear()
        self._buffered = 0
        self._complete = False
        self._got_bytes = False
        self._error = None
        self.headers = {}
        self.status = 0
        if self.transport is None or self.transport.is_closing():
            raise ConnectionLost("connection already closed", before_response=True)
        self.transport.write(payload)
        if self._write_paused:
            self._write_waiter = loop.create_future()
            await self._write_waiter
        await self._headers_ready

    async def next_chunk(self) -> bytes | None:
        """The next body chunk, or None at the end of the body."""
        assert self._data_ready is not None
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused_reading and self._buffered < _HIGH_WATER // 2 and self.transport is not None:
                    self._paused_reading = False
                    self.transport.resume_reading()
                return chunk
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._data_ready.clear()
            await self._data_ready.wait()

    @property
    def reusable(self) -> bool:
        return self._complete and not self.closed and self.keep_alive


class Response:
    def __init__(self, conn: _Connection, pool: HttpPool) -> None:
        self._conn = conn
        self._pool = pool
        self.status = conn.status
        self.headers = conn.headers
        self._released = False

    async def read(self) -> bytes:
        parts = []
        while (chunk := await self._conn.next_chunk()) is not None:
            parts.append(chunk)
        self.release()
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._conn.next_chunk()) is not None:
            yield chunk
        self.release()

    async def drain(self, timeout: float) -> None:
        """Read what is left of the body (within ``timeout``) so the connection can be kept."""
        with contextlib.suppress(TimeoutError, HttpClientError):
            async with asyncio.timeout(timeout):
                while await self._conn.next_chunk() is not None:
                    pass
        self.release()

    def lines(self) -> _LineReader:
        """The body as a ``readline()`` source (for SSE)."""
        return _LineReader(self)

    def release(self) -> None:
        """Hand the connection back if the response was read to the end; otherwise close it."""
        if self._released:
            return
        self._released = True
        self._pool._release(self._conn)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class _LineReader:
    """``readline()`` over a streamed body, for the SSE parser."""

    def __init__(self, response: Response) -> None:
        self._response = response
        self._buffer = b""
        self._eof = False

    async def readline(self) -> bytes:
        while True:
            index = self._buffer.find(b"\n")
            if index >= 0:
                line, self._buffer = self._buffer[: index + 1], self._buffer[index + 1 :]
                return line
            if self._eof:
                line, self._buffer = self._buffer, b""
                return line
            chunk = await self._response._conn.next_chunk()
            if chunk is None:
                self._eof = True
                self._response.release()
            else:
                self._buffer += chunk


class HttpPool:
    """Keep-alive connections to one origin (scheme, host, port)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 256,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        default_port = (parts.scheme == "https" and self.port == 443) or (
            parts.scheme == "http" and self.port == 80
        )
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):
            self.host_header = f"[{self.host}]" + ("" if default_port else f":{self.port}")
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._all)

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def _release(self, conn: _Connection) -> None:
        if conn.reusable and not self._closed:
            conn.reused = True
            self._idle.append(conn)
        else:
            conn.close()
            self._all.discard(conn)
        self._slots.release()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            raise HttpClientError(f"connecting to {self.host_header} timed out") from None
        except OSError as exc:
            raise HttpClientError(f"cannot connect to {self.host_header}: {exc.strerror or exc}") from exc
        self._all.add(protocol)
        return protocol

    def _encode(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}", f"Content-Length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Response:
        """Send a request and return once the response headers arrived; read or release the body."""
        if self._closed:
            raise HttpClientError("client closed")
        payload = self._encode(method, path, headers, body)
        await self._slots.acquire()
        try:
            for attempt in (1, 2):
                conn = self._take_idle() or await self._connect()
                try:
                    await conn.send(payload)
                except ConnectionLost as lost:
                    conn.close()
                    self._all.discard(conn)
                    # A kept-alive connection the server closed as we wrote: it never saw the request.
                    if attempt == 1 and conn.reused and lost.before_response:
                        continue
                    raise
                except BaseException:
                    conn.close()
                    self._all.discard(conn)
                    raise
                return Response(conn, self)
            raise AssertionError("unreachable")
        except BaseException:
            self._slots.release()
            raise

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
            self._all.discard(conn)
        return None

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"<HttpPool {self.host_header} open={len(self._all)} idle={len(self._idle)}>"


def request_target(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path
