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
import os
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from gateway_common.http.base import (
    ConnectError,
    ConnectionLost,
    HttpClientError,
    MalformedResponse,
    ReadTimeout,
)
from gateway_common.http.connection import Response, _Connection
from gateway_common.http.happy_eyeballs import open_socket
from gateway_common.http.headers import encode_head

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "HttpClientError",
    "HttpPool",
    "MalformedResponse",
    "ReadTimeout",
    "Response",
    "request_target",
]


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
                sock = await open_socket(loop, self.host, self.port)
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

    def _encode(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> bytes:
        return encode_head(method, target, self.host_header, headers, len(body)) + body

    async def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> Response:
        """Send a request and return once the final response's headers arrived (1xx are skipped);
        read or release the body. A header that could inject is refused before anything is sent."""
        if self._closed:
            raise HttpClientError("client closed")
        payload = self._encode(method, target, headers, body)
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

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"<HttpPool {self.host_header} open={len(self._all)} idle={len(self._idle)}>"


def request_target(url: str) -> str:
    """The path and query of ``url`` as an HTTP/1.1 request target (``/`` when it has no path)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path
