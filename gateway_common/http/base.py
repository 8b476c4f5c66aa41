"""The HTTP client seam: what the gateway needs from a client towards one origin, and its errors.

Both front doors talk HTTP through this interface only (MCP upstreams over
streamable HTTP, model providers): `HttpClient.request` sends one request and
returns at the response headers; the caller reads the body (whole, in chunks as
they arrive, or as lines for SSE) and then releases or closes the response.
Implementations: `pool.HttpPool` (a small keep-alive HTTP/1.1 client on
httptools, the fast path) and an httpx-based one (proxies, custom CAs, client
certificates, HTTP/2). Every implementation passes one contract test suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol, Self, overload


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
    """The server's bytes are not an HTTP response (or a response the gateway never asked for, e.g. 101)."""


class InvalidRequest(HttpClientError, ValueError):
    """The request was refused before anything was sent: a header name or value (or the target) with
    CR, LF, NUL or another character that could inject headers, or a header the client sets itself."""


class ResponseHeaders(Protocol):
    """Response headers, names case-insensitive. ``get`` and ``[]`` give the first value of a name,
    ``get_all`` every value in order (a server may repeat a header, e.g. ``Set-Cookie`` or ``Link``)."""

    @overload
    def get(self, name: str, /) -> str | None: ...

    @overload
    def get(self, name: str, default: str, /) -> str: ...

    def __getitem__(self, name: str, /) -> str: ...

    def __contains__(self, name: object, /) -> bool: ...

    def get_all(self, name: str, /) -> list[str]: ...


class LineSource(Protocol):
    async def readline(self) -> bytes:
        """The next piece of the body up to and including a line ending (``\\n`` or ``\\r``), or
        what is left at the end; ``b""`` when done. A ``\\r\\n`` may come back split in two."""
        ...


class HttpResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> ResponseHeaders:
        """Repeated headers: ``get`` gives the first value."""
        ...

    async def read(self) -> bytes:
        """The whole (rest of the) body; releases the response."""
        ...

    async def read_some(self) -> bytes:
        """The body bytes that have arrived, waiting for some if none have; ``b""`` at the end."""
        ...

    def at_eof(self) -> bool:
        """True when the whole body is known to have arrived and been read (the next read returns the
        end). False may also mean "not known yet": a client may learn of the end only at the next read."""
        ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    async def drain(self, timeout: float) -> None:
        """Read what is left (within ``timeout``) so the connection can be kept, then release."""
        ...

    def lines(self) -> LineSource:
        """The body as a ``readline()`` source (for SSE)."""
        ...

    def release(self) -> None:
        """Done with the response: the connection is kept if the body was read to its end."""
        ...

    def close(self) -> None:
        """Abandon the response and its connection (a reader waiting on it gets `ConnectionLost`)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...


class HttpClient(Protocol):
    """Requests to one origin (scheme, host, port), over kept-alive connections."""

    async def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> HttpResponse:
        """Send one request (``target`` is the path and query) and return at the response headers.

        Raises `ConnectError`, `ConnectionLost`, `ReadTimeout`, `MalformedResponse`, `InvalidRequest`
        (all `HttpClientError`). Interim (1xx) responses are skipped; a 101 is a `MalformedResponse`.
        Cancelling the caller abandons the request and its connection.
        """
        ...

    @property
    def open_connections(self) -> int:
        """Connections open now (idle or in use)."""
        ...

    @property
    def in_use(self) -> int:
        """Requests holding a connection (from `request` until their response is released)."""
        ...

    async def aclose(self) -> None: ...
