"""`HttpClient` on httpx: the client for what the fast pool does not do (HTTP(S) proxies, HTTP/2).

It costs several times the fast pool's CPU per request (measured in ``benchmarks/http_clients.py``),
so `factory.open_client` gives it only the origins that need it. It keeps the pool's contract (the
shared suite in ``tests/gateway/test_http_contract.py`` runs against both): the same errors with the
same meaning, bodies relayed as they arrive and byte for byte (no ``Accept-Encoding`` is sent, nothing
is decoded), the same timeouts (connect, the longest silence while a response or more of it is
awaited, idle keep-alive), one retry of a request whose reused connection died before any byte of
the answer (optionally only within ``retry_stale_within`` of sending), and cancellation or `close`
abandoning the request and its connection (a reader waiting on the body gets `ConnectionLost`).

It talks to httpx's transport directly (no ``AsyncClient``: no default headers, cookies, redirects
or environment lookups of its own); the proxy, TLS context and HTTP/2 are decided by the factory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway_common.http.base import (
    ConnectError,
    ConnectionLost,
    HttpClientError,
    InvalidRequest,
    MalformedResponse,
    ReadTimeout,
)
from gateway_common.http.factory import ClientOptions
from gateway_common.http.headers import Headers, check_request
from gateway_common.http.lines import LineReader
from gateway_common.http.tls import client_ssl_context

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_NO_BODY_STATUSES = frozenset({204, 304})


class _Trace:
    """httpcore's trace hook, to learn whether a request opened a connection or reused one."""

    __slots__ = ("connected",)

    def __init__(self) -> None:
        self.connected = False

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith("connect_tcp.started"):
            self.connected = True


class HttpxClient:
    """Requests to one origin through httpx (see the module docstring)."""

    def __init__(
        self,
        url: str,
        options: ClientOptions,
        *,
        proxy: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.host_header = host + (f":{parts.port}" if parts.port else "")
        self._origin = f"{parts.scheme}://{self.host_header}"
        self.read_timeout = options.read_timeout
        self.retry_stale_within = options.retry_stale_within
        self._timeouts = {
            "connect": options.connect_timeout,
            "read": options.read_timeout,
            "write": options.read_timeout,
            "pool": None,
        }
        limits = httpx.Limits(
            max_connections=options.max_connections,
            max_keepalive_connections=options.max_connections,
            keepalive_expiry=options.idle_timeout,
        )
        self._transport = httpx.AsyncHTTPTransport(
            verify=ssl_context or client_ssl_context(),
            http1=True,
            http2=options.http2,
            limits=limits,
            proxy=_proxy(proxy) if proxy else None,
            trust_env=False,
            retries=0,
        )
        self._in_use = 0
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        pool = self._transport._pool  # httpcore's pool: httpx keeps no public handle on it
        return sum(1 for conn in pool.connections if not conn.is_closed())

    @property
    def in_use(self) -> int:
        """Requests holding a connection (from `request` until their response is released)."""
        return self._in_use

    async def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> HttpxResponse:
        """Send a request and return at the final response's headers (1xx are skipped by httpcore)."""
        if self._closed:
            raise HttpClientError("client closed")
        check_request(method, target, headers)
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        content = body if body or method in _BODY_METHODS else None
        loop = asyncio.get_running_loop()
        self._in_use += 1
        try:
            for attempt in (1, 2):
                trace = _Trace()
                request = httpx.Request(
                    method,
                    self._origin + target,
                    headers=raw,
                    content=content,
                    extensions={"timeout": self._timeouts, "trace": trace},
                )
                sent = loop.time()
                try:
                    response = await self._transport.handle_async_request(request)
                except httpx.HTTPError as exc:
                    error = self._error(exc, body_started=False)
                    window = self.retry_stale_within
                    if (
                        attempt == 1
                        and not trace.connected  # a kept-alive connection the server closed as we wrote
                        and isinstance(error, ConnectionLost)
                        and error.before_response
                        and (window is None or loop.time() - sent <= window)
                    ):
                        continue
                    raise error from exc
                if response.status_code == 101:
                    await response.aclose()
                    raise MalformedResponse("unexpected 101 Switching Protocols: no upgrade was asked for")
                return HttpxResponse(response, self, method)
            raise AssertionError("unreachable")
        except BaseException:
            self._in_use -= 1
            raise

    def _error(self, exc: httpx.HTTPError, body_started: bool) -> HttpClientError:
        """The seam's error for an httpx one, with the meaning the pool gives it."""
        host = self.host_header
        if isinstance(exc, httpx.ConnectTimeout):
            return ConnectError(f"connecting to {host} timed out", "timed out")
        if isinstance(exc, httpx.ProxyError):
            reason = f"the proxy refused: {exc}"
            return ConnectError(f"cannot connect to {host}: {reason}", reason)
        if isinstance(exc, httpx.ConnectError):
            reason = _connect_reason(exc)
            return ConnectError(f"cannot connect to {host}: {reason}", reason)
        if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
            return ReadTimeout(f"{host} sent nothing for {self.read_timeout or 0:g} s")
        if isinstance(exc, httpx.RemoteProtocolError):
            text = str(exc)
            if (
                text.startswith(("Server disconnected", "peer closed"))
                or "Terminated" in text
                or "Reset" in text
            ):
                reason = "connection closed by the server"
                return ConnectionLost(reason, before_response=not body_started)
            return MalformedResponse(f"malformed HTTP response: {text}")
        if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.CloseError):
            return ConnectionLost(
                f"connection lost: {exc or type(exc).__name__}", before_response=not body_started
            )
        if isinstance(exc, httpx.LocalProtocolError):
            return InvalidRequest(f"refused to send the request: {exc}")
        if isinstance(exc, httpx.TimeoutException):
            return ReadTimeout(f"{host}: {type(exc).__name__}")
        return HttpClientError(f"{type(exc).__name__}: {exc}")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Closing a response is async in httpx; `release` and `close` are not, so it runs as a task."""
        task = asyncio.get_running_loop().create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        self._closed = True
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self._transport.aclose()

    def __repr__(self) -> str:
        return f"<HttpxClient {self._origin} in_use={self._in_use}>"


def _proxy(url: str) -> httpx.Proxy:
    """An https:// proxy is verified against the system trust store, as the pool verifies upstreams."""
    if url.startswith("https://"):
        return httpx.Proxy(url, ssl_context=client_ssl_context())
    return httpx.Proxy(url)


def _connect_reason(exc: BaseException) -> str:
    """Why a connection failed, the way the pool words it (``Connection refused``), without the address."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return cause.strerror or str(cause)
        if isinstance(cause, socket.gaierror):
            return cause.strerror or str(cause)
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    return text or type(exc).__name__


async def _close_quietly(response: httpx.Response) -> None:
    with contextlib.suppress(httpx.HTTPError, OSError):
        await response.aclose()


class HttpxResponse:
    """A streamed httpx response behind the `HttpResponse` interface."""

    def __init__(self, response: httpx.Response, client: HttpxClient, method: str) -> None:
        self._response = response
        self._client = client
        self.status = response.status_code
        self.headers = Headers.from_pairs(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw
        )
        version = response.extensions.get("http_version", b"HTTP/1.1")
        self.http_version = version.decode("ascii") if isinstance(version, bytes) else str(version)
        self._body = response.stream.__aiter__()  # type: ignore[union-attr]
        length = self.headers.get("content-length")
        self._length: int | None = int(length) if length and length.isdigit() else None
        if method == "HEAD" or self.status in _NO_BODY_STATUSES:
            self._length = 0
        self._received = 0
        self._ended = False
        self._released = False
        self._reader: asyncio.Task[Any] | None = None
        self._interrupted = False

    async def read_some(self) -> bytes:
        """The next body bytes as they arrive; ``b""`` at the end (the connection then goes back)."""
        if self._ended:
            return b""
        if self._released:
            raise ConnectionLost("the response was released before its end", before_response=False)
        task = asyncio.current_task()
        self._reader = task
        try:
            while True:
                chunk: bytes = await self._body.__anext__()
                if chunk:
                    break
        except StopAsyncIteration:
            self._reader = None
            await _close_quietly(self._response)  # the whole body was read: the connection is kept
            self._ended = True
            self.release()
            return b""
        except asyncio.CancelledError:
            if self._interrupted and task is not None and task.uncancel() == 0:
                raise ConnectionLost("closed by the client", before_response=False) from None
            raise
        except httpx.HTTPError as exc:
            self.close()
            raise self._client._error(exc, body_started=True) from exc
        finally:
            self._reader = None
        self._received += len(chunk)
        return chunk

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.read_some():
            parts.append(chunk)
        return b"".join(parts)

    def at_eof(self) -> bool:
        """True once the end was read, or all of a ``Content-Length`` body (the next read ends it)."""
        return self._ended or (self._length is not None and self._received >= self._length)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.read_some():
            yield chunk

    async def drain(self, timeout: float) -> None:
        """Read what is left (within ``timeout``) so the connection can be kept, then release."""
        try:
            async with asyncio.timeout(timeout):
                while await self.read_some():
                    pass
        except (TimeoutError, HttpClientError):
            pass
        self.release()

    def lines(self) -> LineReader:
        """The body cut at line endings (for SSE)."""
        return LineReader(self.read_some)

    def release(self) -> None:
        """Done: the connection is kept if the body was read to its end; otherwise it is closed."""
        if self._released:
            return
        self._released = True
        self._client._in_use -= 1
        if not self._ended:
            self._abandon()

    def close(self) -> None:
        """Abandon the response and its connection; a reader waiting on it gets `ConnectionLost`."""
        self.release()

    def _abandon(self) -> None:
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            # The reader's httpcore stream closes itself (and its connection) as the cancellation unwinds.
            self._interrupted = True
            reader.cancel()
        elif not self._interrupted:
            self._interrupted = True
            self._client._spawn(_close_quietly(self._response))

    async def __aenter__(self) -> HttpxResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
