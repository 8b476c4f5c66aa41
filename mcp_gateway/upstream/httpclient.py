"""A small HTTP/1.1 keep-alive client for the tools/call hot path.

Why not a library: forwarding a call through aiohttp cost about 0.25 ms of CPU
per request here, about half of the gateway's whole budget; this client (an
asyncio protocol around the httptools parser, the same parser uvicorn uses)
costs a fraction of that. It is deliberately narrow: one origin per pool,
requests with a known body, no redirects, no proxies, no compression.

What it does own, and is tested for: keep-alive pooling with a bounded number
of connections, content-length, chunked and close-delimited responses,
streamed bodies (SSE) with back-pressure, TLS for https origins, connect
timeouts, an optional read timeout (the longest silence while a response is
awaited), servers that close idle connections (detected at once, and one retry
if a reused connection dies before any byte of the response, optionally only
within a short window after sending), an optional limit on how long an idle
connection is kept, and ``Connection: close``. Callers may also bound each
request's total time with ``asyncio.timeout``. Bodies are passed through as
they come: no ``Accept-Encoding`` is sent and nothing is decoded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import itertools
import os
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any
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


class ConnectError(HttpClientError):
    """No connection could be made; ``reason`` names why without naming the host (refused, timed out...)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ReadTimeout(HttpClientError):
    """The server sent nothing for ``read_timeout`` seconds while a response (or more of it) was awaited."""


class MalformedResponse(HttpClientError):
    """The server's bytes are not an HTTP/1.1 response."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request/response at a time."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._headers_ready: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._data_waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._got_bytes = False
        self._until_eof = False
        self._error: BaseException | None = None
        self._paused_reading = False
        self._write_paused = False
        self._write_waiter: asyncio.Future[None] | None = None
        # Read timeout: one timer per connection, re-armed lazily (not per chunk) while a read waits.
        self._read_timeout = pool.read_timeout
        self._waiting = False
        self._silent_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.status = 0
        self.keep_alive = False
        self.headers: dict[str, str] = {}

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._waiting:
            self._silent_since = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        with contextlib.suppress(httptools.HttpParserError):
            self.parser.feed_data(b"")
        if self._until_eof and not self._complete:
            self.on_message_complete()  # a body without a length ends when the server closes
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if not self._complete:
            reason = f"connection lost: {exc}" if exc else "connection closed by the server"
            self._fail(ConnectionLost(reason, before_response=not self._got_bytes))
        self._wake_writer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._silent_since = self.loop.time()  # the server is reading: progress
        self._wake_writer()

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        headers = self.headers
        self._until_eof = (
            not self.keep_alive
            and status >= 200
            and status not in (204, 304)
            and "content-length" not in headers
            and "transfer-encoding" not in headers
        )
        if self._headers_ready is not None and not self._headers_ready.done():
            self._headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and self.transport is not None and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()
        if self._data_waiter is not None:
            self._wake_reader()

    def on_message_complete(self) -> None:
        self._complete = True
        if self._data_waiter is not None:
            self._wake_reader()

    # -- timers and failures -------------------------------------------------------------

    def _await_bytes(self) -> None:
        """A read starts waiting: the server's silence is measured from now (or its next bytes)."""
        if self._read_timeout is not None:
            self._waiting = True
            self._silent_since = self.loop.time()
            if self._timer is None:
                self._timer = self.loop.call_at(self._silent_since + self._read_timeout, self._check_silence)

    def _check_silence(self) -> None:
        self._timer = None
        if not self._waiting or self.closed or self._read_timeout is None:
            return
        deadline = self._silent_since + self._read_timeout
        if self.loop.time() >= deadline - 0.001:  # timers may fire up to a clock tick early
            self._fail(ReadTimeout(f"{self.pool.host_header} sent nothing for {self._read_timeout:g} s"))
        else:
            self._timer = self.loop.call_at(deadline, self._check_silence)

    def _wake_reader(self) -> None:
        waiter, self._data_waiter = self._data_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._headers_ready is not None and not self._headers_ready.done():
            self._headers_ready.set_exception(error)
        if self._data_waiter is not None:
            self._wake_reader()
        self._wake_writer()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # close() would first wait to flush a write the server is not reading

    # -- used by the pool and the response -----------------------------------------------

    def close(self) -> None:
        """Close after a whole response; mid-response, abort at once and wake whoever waits on it."""
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            if self._complete or self._headers_ready is None:
                self.transport.close()
            else:  # (a TLS close would first wait up to 30 s for the server's close_notify)
                self._fail(ConnectionLost("closed by the client", before_response=not self._got_bytes))

    async def send(self, payload: bytes) -> None:
        self._headers_ready = self.loop.create_future()
        self._chunks.clear()
        self._buffered = 0
        self._complete = False
        self._got_bytes = False
        self._until_eof = False
        self._error = None
        self.headers = {}
        self.status = 0
        if self.transport is None or self.transport.is_closing():
            raise ConnectionLost("connection already closed", before_response=True)
        self._await_bytes()
        try:
            self.transport.write(payload)
            if self._write_paused:
                self._write_waiter = self.loop.create_future()
                await self._write_waiter
            await self._headers_ready
        finally:
            self._waiting = False

    async def next_chunk(self, joined: bool = False) -> bytes | None:
        """The next body chunk (``joined``: everything that has arrived), or None at the end of the body."""
        while True:
            chunks = self._chunks
            if chunks:
                if joined and len(chunks) > 1:
                    chunk = b"".join(chunks)
                    chunks.clear()
                    self._buffered = 0
                else:
                    chunk = chunks.popleft()
                    self._buffered -= len(chunk)
                if self._paused_reading and self._buffered < _HIGH_WATER // 2 and self.transport is not None:
                    self._paused_reading = False
                    self.transport.resume_reading()
                return chunk
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._data_waiter = waiter = self.loop.create_future()
            self._await_bytes()
            try:
                await waiter
            finally:
                self._data_waiter = None
                self._waiting = False

    @property
    def at_eof(self) -> bool:
        return self._complete and not self._chunks

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

    async def read_some(self) -> bytes:
        """All the body bytes that have arrived, waiting for some if none have; ``b""`` at the end."""
        chunk = await self._conn.next_chunk(joined=True)
        if chunk is None:
            self.release()
            return b""
        return chunk

    def at_eof(self) -> bool:
        """Whether the whole body has arrived and been read (the next read would return the end)."""
        return self._conn.at_eof

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

    def close(self) -> None:
        """Drop the connection whatever is left of the body (a reader waiting on it gets `ConnectionLost`)."""
        self._conn.close()
        self.release()

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
    """Keep-alive connections to one origin (scheme, host, port).

    ``connect_timeout`` bounds DNS, TCP and TLS set-up (`ConnectError`). ``read_timeout``, when given,
    is the longest the server may stay silent while the request is being sent or the response (its
    headers, or the next bytes of its body) is awaited (`ReadTimeout`). ``idle_timeout``, when given,
    closes connections that sat idle longer instead of reusing them (servers, load balancers and NATs
    drop idle connections, not always with a FIN). A reused connection that dies before any byte of
    the response is retried once on a new one (the server closed it as the request went out); with
    ``retry_stale_within``, only if it died within that many seconds of sending: a server that failed
    later may have acted on the request.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 256,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        read_timeout: float | None = None,
        idle_timeout: float | None = None,
        retry_stale_within: float | None = None,
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
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.retry_stale_within = retry_stale_within
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._slots = asyncio.Semaphore(max_connections)
        self._in_use = 0
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._all)

    @property
    def in_use(self) -> int:
        """Requests holding a connection (from `request` until their response is released)."""
        return self._in_use

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def _release(self, conn: _Connection) -> None:
        if conn.reusable and not self._closed:
            conn.reused = True
            if self.idle_timeout is not None:
                conn.idle_since = conn.loop.time()
            self._idle.append(conn)
        else:
            conn.close()
            self._all.discard(conn)
        self._in_use -= 1
        self._slots.release()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                sock = await _open_socket(loop, self.host, self.port)
                try:
                    _, protocol = await loop.create_connection(
                        lambda: _Connection(self),
                        sock=sock,
                        ssl=self.ssl,
                        server_hostname=self.host if self.ssl else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise ConnectError(f"connecting to {self.host_header} timed out", "timed out") from None
        except OSError as exc:
            if exc.errno and not isinstance(exc, ssl.SSLError | socket.gaierror):
                reason = os.strerror(exc.errno)  # asyncio's own strerror names the address
            else:
                reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(f"cannot connect to {self.host_header}: {reason}", reason) from exc
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
        self._in_use += 1
        try:
            for attempt in (1, 2):
                conn = self._take_idle() or await self._connect()
                window = self.retry_stale_within
                sent = conn.loop.time() if window is not None else 0.0
                try:
                    await conn.send(payload)
                except ConnectionLost as lost:
                    conn.close()
                    self._all.discard(conn)
                    # A kept-alive connection the server closed as we wrote: it never saw the request.
                    if (
                        attempt == 1
                        and conn.reused
                        and lost.before_response
                        and (window is None or conn.loop.time() - sent <= window)
                    ):
                        continue
                    raise
                except BaseException:
                    conn.close()
                    self._all.discard(conn)
                    raise
                return Response(conn, self)
            raise AssertionError("unreachable")
        except BaseException:
            self._in_use -= 1
            self._slots.release()
            raise

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        if self.idle_timeout is not None and idle:
            oldest = idle[0].loop.time() - self.idle_timeout
            while idle and idle[0].idle_since < oldest:  # the longest idle are at the bottom
                stale = idle.pop(0)
                stale.close()
                self._all.discard(stale)
        while idle:
            conn = idle.pop()
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


_AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
HAPPY_EYEBALLS_DELAY = 0.25
"""Seconds before the next address is tried while the previous one has not answered (RFC 8305)."""


async def _open_socket(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected TCP socket to ``host``; with several addresses (IPv6 and IPv4), Happy Eyeballs.

    uvloop's ``create_connection`` tries addresses one after the other, so an address that swallows
    SYNs would spend the whole connect timeout; here the next address starts after a short delay.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos: Sequence[_AddrInfo] = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        infos = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    if len(infos) == 1:
        return await _connect_socket(loop, infos[0])
    first = [info for info in infos if info[0] == infos[0][0]]
    other = [info for info in infos if info[0] != infos[0][0]]
    ordered = [info for pair in itertools.zip_longest(first, other) for info in pair if info is not None]
    pending: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    try:
        while ordered or pending:
            if ordered:
                pending.add(loop.create_task(_connect_socket(loop, ordered.pop(0))))
            done, pending = await asyncio.wait(
                pending, timeout=HAPPY_EYEBALLS_DELAY if ordered else None, return_when="FIRST_COMPLETED"
            )
            for task in done:
                error = task.exception()
                if error is None:
                    pending |= done - {task}  # a second winner is closed below
                    return task.result()
                errors.append(error)
        raise errors[0]
    finally:
        for task in pending:
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
            task.cancel()


async def _connect_socket(loop: asyncio.AbstractEventLoop, info: _AddrInfo) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


def request_target(url: str) -> str:
    """The path and query of ``url`` as an HTTP/1.1 request target (``/`` when it has no path)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path
