"""The streamable-HTTP transport: each request a POST, each answer JSON or an SSE stream.

What differs by era lives here as HTTP: 2026-07-28 requests carry ``Mcp-Method`` /
``Mcp-Name`` (and ``Mcp-Param-*``) headers, 2025-11-25 ones the ``Mcp-Session-Id``
the upstream gave at ``initialize``; the JSON-RPC (envelope, handshake, routing)
is `session.JsonRpcSession`'s. A POST's response may be plain JSON or an SSE
stream that carries progress and log notifications before the result; its
messages are handed to the session as they arrive, on the caller's task, so a
call costs no extra task and cancelling the caller abandons (closes) the POST.
Unsolicited messages come on a listening stream: the 2025 GET stream or a 2026
``subscriptions/listen`` POST.

HTTP itself goes through the client seam, `gateway_common.http.open_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from mcp_types.version import LATEST_MODERN_VERSION

from gateway_common.http import (
    ClientOptions,
    ConnectError,
    HttpClient,
    HttpClientError,
    HttpResponse,
    open_client,
    request_target,
)
from gateway_common.sse import iter_sse_data
from mcp_gateway.upstream.base import JsonObject, UpstreamError, UpstreamUnreachable
from mcp_gateway.upstream.pending import PendingCall
from mcp_gateway.upstream.session import JsonRpcSession, MessageTransport
from policies.servers import HttpServerConfig

logger = logging.getLogger("mcp_gateway.upstream")

_NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_LISTEN_WAIT = 5.0
"""How long opening waits for the listening stream to be established before going on without it."""


class HttpTransport(MessageTransport):
    inline_replies = True

    def __init__(self, config: HttpServerConfig) -> None:
        self.config = config
        self.server = config.name
        self.url = ""
        self.session_id: str | None = None
        self._session: JsonRpcSession | None = None
        self._pool: HttpClient | None = None
        self._path = "/"
        self._base_headers: dict[str, str] = {}
        self._listener: asyncio.Task[None] | None = None

    async def open(self, session: JsonRpcSession, timeout: float) -> None:
        self._session = session
        self.url = self.config.url
        self._base_headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            **self.config.headers,
        }
        # Idle connections are dropped after 30 s (servers and NATs drop them too, not always with a FIN);
        # a kept-alive connection found dead is retried only within 0.5 s of sending, when the server
        # cannot have acted on the call.
        self._pool = open_client(
            self.url,
            ClientOptions(
                connect_timeout=min(timeout, 10.0),
                idle_timeout=30.0,
                retry_stale_within=0.5,
                transport=self.config.http_client,
                http2=self.config.http2,
                tls=self.config.tls,
            ),
        )
        self._path = request_target(self.url)

    def _headers(
        self, modern: bool, message: JsonObject | None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        headers = dict(self._base_headers)
        if modern:
            headers["MCP-Protocol-Version"] = LATEST_MODERN_VERSION
            if message is not None:
                method = message["method"]
                headers["Mcp-Method"] = method
                name_key = _NAME_PARAM.get(method)
                if name_key is not None:
                    value = (message.get("params") or {}).get(name_key)
                    if isinstance(value, str):
                        headers["Mcp-Name"] = value
        else:
            assert self._session is not None
            headers["MCP-Protocol-Version"] = self._session.protocol_version
            if self.session_id is not None:
                headers["Mcp-Session-Id"] = self.session_id
        if extra:
            headers.update(extra)
        return headers

    async def send_request(
        self, message: JsonObject, call: PendingCall, *, modern: bool, headers: dict[str, str] | None
    ) -> None:
        session, pool = self._session, self._pool
        if session is None or pool is None:
            raise UpstreamUnreachable("not connected")
        request_headers = self._headers(modern, message, headers)
        try:
            resp = await pool.request("POST", self._path, request_headers, orjson.dumps(message))
            try:
                if message["method"] == "initialize" and (sid := resp.headers.get("mcp-session-id")):
                    self.session_id = sid
                content_type = resp.headers.get("content-type", "")
                if resp.status == 404 and self.session_id is not None and not modern:
                    session.connection_lost("the upstream ended our session (HTTP 404)")
                    raise UpstreamUnreachable("the upstream ended our session (HTTP 404)")
                if content_type.startswith("text/event-stream"):
                    await self._read_stream(session, resp, call)
                    return
                body = await resp.read()
            finally:
                resp.release()  # unread (cancelled, failed) responses close their connection
        except ConnectError as exc:
            raise UpstreamUnreachable(f"cannot reach {self.url}: {exc.reason}") from exc
        except HttpClientError as exc:
            # One failed exchange fails this call only; the supervisor's health check decides
            # whether the upstream is down (a cut response says nothing about the next one).
            raise UpstreamError(f"the HTTP exchange failed: {exc}") from exc
        reply = _parse(body)
        if reply is not None and ("result" in reply or "error" in reply):
            await session.receive(reply, call)
        if call.reply is None:
            raise UpstreamError(f"HTTP {resp.status} from {self.url}: {body[:200]!r}")

    async def _read_stream(self, session: JsonRpcSession, resp: HttpResponse, call: PendingCall) -> None:
        async for data in iter_sse_data(resp.lines()):
            message = _parse(data)
            if message is None:
                continue
            await session.receive(message, call)
            if call.reply is not None:
                # The server ends the stream after the result; reading that end keeps the connection.
                await resp.drain(1.0)
                return
        raise UpstreamError("the upstream ended its response stream without a result")

    async def send(self, message: JsonObject) -> None:
        session, pool = self._session, self._pool
        if session is None or pool is None:
            raise UpstreamUnreachable("not connected")
        headers = self._headers(session.modern, None)
        try:
            async with await pool.request("POST", self._path, headers, orjson.dumps(message)) as resp:
                await resp.read()
        except ConnectError as exc:
            raise UpstreamUnreachable(f"cannot reach {self.url}: {exc.reason}") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"the HTTP exchange failed: {exc}") from exc

    async def listen(self, subscribe: JsonObject | None) -> None:
        established = asyncio.Event()
        previous = self._listener
        self._listener = asyncio.create_task(
            self._listen(subscribe, established), name=f"upstream-{self.server}-listen"
        )
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_LISTEN_WAIT):
                    await established.wait()
        finally:
            if previous is not None:  # replaced (a 2026 listen with other resource subscriptions)
                previous.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await previous

    async def _listen(self, subscribe: JsonObject | None, established: asyncio.Event) -> None:
        """Hand what the listening stream carries to the session, on this task (never a caller's)."""
        assert self._pool is not None and self._session is not None
        session = self._session
        try:
            if subscribe is not None:
                resp = await self._pool.request(
                    "POST", self._path, self._headers(True, subscribe), orjson.dumps(subscribe)
                )
            else:
                headers = self._headers(False, None)
                headers["Accept"] = "text/event-stream"
                del headers["Content-Type"]
                resp = await self._pool.request("GET", self._path, headers)
            async with resp:
                established.set()
                if resp.status != 200 or not resp.headers.get("content-type", "").startswith(
                    "text/event-stream"
                ):
                    return
                async for data in iter_sse_data(resp.lines()):
                    message = _parse(data)
                    if message is not None:
                        await session.receive(message, None)
        except HttpClientError as exc:
            logger.debug("[%s] notification stream ended: %s", self.server, exc)
        finally:
            established.set()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        session = self._session
        if self._pool is not None:
            if (
                self.session_id is not None
                and session is not None
                and not session.modern
                and not session.is_closed
            ):
                with contextlib.suppress(HttpClientError, TimeoutError):
                    async with asyncio.timeout(2):
                        headers = self._headers(False, None)
                        async with await self._pool.request("DELETE", self._path, headers) as resp:
                            await resp.read()
            await self._pool.aclose()


def _parse(data: bytes) -> JsonObject | None:
    try:
        message: Any = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None
