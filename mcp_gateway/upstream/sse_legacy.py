"""The older HTTP+SSE transport (protocol 2024-11-05): one GET event stream, messages POSTed.

The gateway GETs the configured URL and keeps the stream open. Its first ``endpoint`` event names
where to POST messages (a path, or a URL on the same origin); every message the server sends
(answers, progress, log messages, its own requests) comes as a ``message`` event on that one
stream. So, as with stdio, a reader task hands everything to `session.JsonRpcSession` (origin
None: progress reaches its call through the call's queue), and a POST only delivers (``202``).

The endpoint comes from the server, but the gateway sends it the configured headers (often a
token) and every tool call's arguments: an endpoint on another origin (scheme, host or port,
so also an https stream naming an http endpoint) is refused and the connection fails, as the
SDK's own client does. A stream that ends or breaks ends the session (the server forgets it);
the supervisor reconnects. A 404 from the endpoint means the server forgot the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import orjson

from gateway_common.http import (
    ClientOptions,
    ConnectError,
    HttpClient,
    HttpClientError,
    open_client,
    request_target,
)
from gateway_common.sse import iter_sse_events
from mcp_gateway.upstream.base import JsonObject, UpstreamError, UpstreamUnreachable
from mcp_gateway.upstream.pending import PendingCall
from mcp_gateway.upstream.session import JsonRpcSession, MessageTransport
from policies.bounds import clip
from policies.servers import SseServerConfig

logger = logging.getLogger("mcp_gateway.upstream")

_SHOWN_CHARS = 200
"""How much of what the server sent (an endpoint, a body) an error quotes."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


class EndpointRefused(UpstreamError):
    """The ``endpoint`` event names somewhere the gateway will not send messages."""


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    """Scheme, host and port (the default one when absent); `ValueError` for a bad port."""
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def _where(url: str) -> str:
    """``url`` without its query or credentials, for messages (a query may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def endpoint_target(stream_url: str, announced: bytes) -> str:
    """The request target (path and query) to POST messages to, from the ``endpoint`` event's data:
    a path or URL, resolved against the stream's URL, which must stay on the stream's origin."""
    try:
        text = announced.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise EndpointRefused("the endpoint event is not UTF-8") from None
    shown = clip(text, _SHOWN_CHARS)
    if not text or any(ch.isspace() or ch < " " or ch == "\x7f" for ch in text):
        raise EndpointRefused(f"the endpoint event names no usable URL: {shown!r}")
    resolved = urlsplit(urljoin(stream_url, text))
    try:
        same = _origin(resolved) == _origin(urlsplit(stream_url))
    except ValueError:
        raise EndpointRefused(f"the endpoint event names a URL with an invalid port: {shown!r}") from None
    if not same:
        elsewhere = clip(f"{resolved.scheme}://{resolved.netloc.rpartition('@')[2]}", _SHOWN_CHARS)
        raise EndpointRefused(
            f"the endpoint event names another origin ({elsewhere}); messages (and the configured "
            f"headers) go only to the origin of {_where(stream_url)}"
        )
    return (resolved.path or "/") + (f"?{resolved.query}" if resolved.query else "")


class SseLegacyTransport(MessageTransport):
    inline_replies = False

    def __init__(self, config: SseServerConfig) -> None:
        self.config = config
        self.server = config.name
        self.where = _where(config.url)
        self.endpoint: str | None = None
        """Where messages are POSTed (path and query), once the stream has announced it."""
        self._session: JsonRpcSession | None = None
        self._pool: HttpClient | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failure: str | None = None
        self._post_headers = {**config.headers, "Content-Type": "application/json"}

    async def open(self, session: JsonRpcSession, timeout: float) -> None:
        self._session = session
        # The stream holds one connection for its lifetime; POSTs use the others. Idle ones are dropped
        # after 30 s, and one found dead is retried only within 0.5 s of sending (unread, so unacted on).
        self._pool = open_client(
            self.config.url,
            ClientOptions(
                connect_timeout=min(timeout, 10.0),
                idle_timeout=30.0,
                retry_stale_within=0.5,
                transport=self.config.http_client,
                http2=self.config.http2,
                tls=self.config.tls,
            ),
        )
        announced = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(session, announced), name=f"upstream-{self.server}-sse")
        try:
            async with asyncio.timeout(timeout):
                await announced
        except TimeoutError:
            raise UpstreamError(f"{self.where} announced no endpoint within {timeout:g} s") from None
        if self.endpoint is None:
            raise UpstreamError(self._failure or "the event stream ended before naming its endpoint")

    async def _read(self, session: JsonRpcSession, announced: asyncio.Future[None]) -> None:
        """Open the stream and hand every message on it to the session, on this task."""
        assert self._pool is not None
        reason = "the upstream ended its event stream"
        headers = {**self.config.headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            async with await self._pool.request("GET", request_target(self.config.url), headers) as resp:
                content_type = resp.headers.get("content-type", "")
                if resp.status != 200 or not content_type.startswith("text/event-stream"):
                    kind = clip(content_type, 80) or "no content type"
                    reason = f"HTTP {resp.status} ({kind}) from {self.where}, not an event stream"
                    if 300 <= resp.status < 400:
                        reason += "; redirects are not followed: give the URL it redirects to"
                    return
                async for event in iter_sse_events(resp.lines()):
                    if event.event == "message":
                        await self._deliver(session, event.data)
                    elif event.event == "endpoint" and self.endpoint is None:
                        self.endpoint = endpoint_target(self.config.url, event.data)
                        if not announced.done():
                            announced.set_result(None)
                    else:
                        logger.debug("[%s] ignored an SSE %.40r event", self.server, event.event)
        except asyncio.CancelledError:
            reason = "closed by the gateway"
            raise
        except EndpointRefused as exc:
            reason = str(exc)
        except ConnectError as exc:
            reason = f"cannot reach {self.where}: {exc.reason}"
        except HttpClientError as exc:
            reason = f"the event stream broke: {exc}"
        finally:
            self._failure = reason
            if not announced.done():
                announced.set_result(None)
            session.connection_lost(reason)

    async def _deliver(self, session: JsonRpcSession, data: bytes) -> None:
        try:
            message: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("[%s] ignored an event that is not JSON: %.200r", self.server, data)
            return
        for one in message if isinstance(message, list) else [message]:  # 2024-11-05 allows batches
            if isinstance(one, dict):
                await session.receive(one, None)

    async def send_request(
        self, message: JsonObject, call: PendingCall, *, modern: bool, headers: dict[str, str] | None
    ) -> None:
        await self.send(message)

    async def send(self, message: JsonObject) -> None:
        session, pool, endpoint = self._session, self._pool, self.endpoint
        if session is None or pool is None or endpoint is None:
            raise UpstreamUnreachable("not connected")
        if session.is_closed:
            raise UpstreamUnreachable(session.closed_reason or "not connected")
        try:
            async with await pool.request(
                "POST", endpoint, self._post_headers, orjson.dumps(message)
            ) as resp:
                body = await resp.read()
        except ConnectError as exc:
            raise UpstreamUnreachable(f"cannot reach {self.where}: {exc.reason}") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"the HTTP exchange failed: {exc}") from exc
        if 200 <= resp.status < 300:
            if body and resp.headers.get("content-type", "").startswith("application/json"):
                await self._deliver(session, body)  # answered here instead of on the stream: take it
            return
        if resp.status == 404:
            # The server no longer knows the session (restarted, or dropped it): it never read this.
            session.connection_lost("the upstream ended our session (HTTP 404 from its message endpoint)")
            raise UpstreamUnreachable(session.closed_reason or "session ended")
        shown = clip(body.decode("utf-8", "replace"), _SHOWN_CHARS)
        raise UpstreamError(f"HTTP {resp.status} from the message endpoint: {shown!r}")

    async def listen(self, subscribe: JsonObject | None) -> None:
        """Nothing to open: the one event stream already carries everything the server sends."""

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pool is not None:
            await self._pool.aclose()
