"""An upstream MCP server reached over streamable HTTP.

Speaks either protocol era: 2026-07-28 (stateless; every request carries its
envelope in ``_meta`` and routing headers) when the server answers
``server/discover``, else 2025-11-25 (``initialize`` and an ``Mcp-Session-Id``).
Responses may be plain JSON or an SSE stream that carries progress
notifications before the result; both are handled on the caller's task, so a
call costs no extra task and cancelling the caller aborts the POST.

The transport is `httpclient.HttpPool`, a small keep-alive HTTP/1.1 client
(see its docstring for why not aiohttp or httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

import orjson
from mcp_types.version import LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS

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
from mcp_gateway.upstream.base import (
    CLIENT_INFO,
    JsonObject,
    NotificationHandler,
    UpstreamConnection,
    UpstreamError,
    UpstreamRequestTimeout,
    UpstreamUnreachable,
    initialize_params,
)
from policies.servers import HttpServerConfig

logger = logging.getLogger("mcp_gateway.upstream")

_NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


class HttpConnection(UpstreamConnection):
    def __init__(self, config: HttpServerConfig) -> None:
        super().__init__(config.name)
        self.config = config
        self.url = ""
        self.modern = False
        self.session_id: str | None = None
        self._ids = itertools.count(1)
        self._pool: HttpClient | None = None
        self._path = "/"
        self._base_headers: dict[str, str] = {}
        self._listener: asyncio.Task[None] | None = None

    async def open(self, timeout: float) -> None:
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
        async with asyncio.timeout(timeout):
            if self.config.protocol != "2025-11-25" and await self._discover():
                self.modern = True
            elif self.config.protocol == "2026-07-28":
                raise UpstreamError("server/discover failed; the server does not speak 2026-07-28")
            else:
                await self._initialize()
        self._listener = asyncio.create_task(self._listen(), name=f"upstream-{self.server}-listen")

    async def _discover(self) -> bool:
        try:
            reply = await self._exchange(
                "server/discover", {}, modern=True, timeout=None, on_notification=None
            )
        except UpstreamError as exc:
            logger.debug("[%s] server/discover refused (%s); falling back to initialize", self.server, exc)
            return False
        result = reply.get("result")
        if not isinstance(result, dict):
            return False
        versions = result.get("supportedVersions") or []
        if not any(v in MODERN_PROTOCOL_VERSIONS for v in versions):
            return False
        self.protocol_version = LATEST_MODERN_VERSION
        self.capabilities = result.get("capabilities") or {}
        self.instructions = result.get("instructions")
        meta = result.get("_meta") or {}
        self.server_info = meta.get("io.modelcontextprotocol/serverInfo") or {}
        return True

    async def _initialize(self) -> None:
        reply = await self._exchange(
            "initialize", initialize_params(), modern=False, timeout=None, on_notification=None
        )
        if "error" in reply:
            raise UpstreamError(f"initialize failed: {reply['error'].get('message')}")
        result = reply.get("result") or {}
        self.protocol_version = str(result.get("protocolVersion", self.protocol_version))
        self.server_info = result.get("serverInfo") or {}
        self.capabilities = result.get("capabilities") or {}
        self.instructions = result.get("instructions")
        await self._post(
            {"jsonrpc": "2.0", "method": "notifications/initialized"}, self._headers(False, None)
        )

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
            headers["MCP-Protocol-Version"] = self.protocol_version
            if self.session_id is not None:
                headers["Mcp-Session-Id"] = self.session_id
        if extra:
            headers.update(extra)
        return headers

    def _envelope(self, params: JsonObject | None) -> JsonObject:
        params = dict(params or {})
        meta = dict(params.get("_meta") or {})
        meta["io.modelcontextprotocol/protocolVersion"] = LATEST_MODERN_VERSION
        meta["io.modelcontextprotocol/clientInfo"] = CLIENT_INFO
        meta["io.modelcontextprotocol/clientCapabilities"] = {}
        params["_meta"] = meta
        return params

    async def request(
        self,
        method: str,
        params: JsonObject | None,
        *,
        timeout: float | None,
        on_notification: NotificationHandler | None = None,
        headers: dict[str, str] | None = None,
    ) -> JsonObject:
        if self.is_closed:
            raise UpstreamUnreachable(self.closed_reason or "not connected")
        return await self._exchange(
            method,
            params,
            modern=self.modern,
            timeout=timeout,
            on_notification=on_notification,
            headers=headers,
        )

    async def _exchange(
        self,
        method: str,
        params: JsonObject | None,
        *,
        modern: bool,
        timeout: float | None,
        on_notification: NotificationHandler | None,
        headers: dict[str, str] | None = None,
    ) -> JsonObject:
        request_id = next(self._ids)
        if on_notification is not None:
            params = dict(params or {})
            meta = dict(params.get("_meta") or {})
            meta["progressToken"] = request_id
            params["_meta"] = meta
        if modern:
            params = self._envelope(params)
        message: JsonObject = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        request_headers = self._headers(modern, message, headers)
        try:
            async with asyncio.timeout(timeout):
                return await self._send_and_read(message, request_headers, on_notification)
        except TimeoutError:
            self._cancel_upstream(request_id, "timed out in the gateway")
            raise UpstreamRequestTimeout(f"no answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            self._cancel_upstream(request_id, "cancelled by the client")
            raise
        except ConnectError as exc:
            raise UpstreamUnreachable(f"cannot reach {self.url}: {exc.reason}") from exc
        except HttpClientError as exc:
            # One failed exchange fails this call only; the supervisor's health check decides
            # whether the upstream is down (a cut response says nothing about the next one).
            raise UpstreamError(f"the HTTP exchange failed: {exc}") from exc

    async def _send_and_read(
        self, message: JsonObject, headers: dict[str, str], on_notification: NotificationHandler | None
    ) -> JsonObject:
        assert self._pool is not None
        resp = await self._pool.request("POST", self._path, headers, orjson.dumps(message))
        try:
            if message["method"] == "initialize" and (sid := resp.headers.get("mcp-session-id")):
                self.session_id = sid
            content_type = resp.headers.get("content-type", "")
            if resp.status == 404 and self.session_id is not None and not self.modern:
                self._mark_closed("the upstream ended our session (HTTP 404)")
                raise UpstreamUnreachable("the upstream ended our session (HTTP 404)")
            if content_type.startswith("text/event-stream"):
                return await self._read_stream(resp, message["id"], on_notification)
            body = await resp.read()
        finally:
            resp.release()  # unread (cancelled, failed) responses close their connection
        try:
            reply: Any = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            reply = None
        if isinstance(reply, dict) and ("result" in reply or "error" in reply):
            return reply
        raise UpstreamError(f"HTTP {resp.status} from {self.url}: {body[:200]!r}")

    async def _read_stream(
        self, resp: HttpResponse, request_id: int, on_notification: NotificationHandler | None
    ) -> JsonObject:
        async for data in iter_sse_data(resp.lines()):
            try:
                message = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(message, dict):
                continue
            if "method" not in message:
                if message.get("id") == request_id:
                    # The server ends the stream after the result; reading that end keeps the connection.
                    await resp.drain(1.0)
                    return message
                continue
            if "id" in message:
                await self._refuse_server_request(message)
            elif message["method"] == "notifications/progress":
                if on_notification is not None:
                    await on_notification(message)
            elif on_notification is not None and message["method"] == "notifications/message":
                await on_notification(message)
            elif self.on_notification is not None:
                self.on_notification(message)
        raise UpstreamError("the upstream ended its response stream without a result")

    async def _refuse_server_request(self, message: JsonObject) -> None:
        reply = {
            "jsonrpc": "2.0",
            "id": message["id"],
            "error": {"code": -32601, "message": f"the gateway does not offer {message['method']}"},
        }
        with contextlib.suppress(HttpClientError, UpstreamError):
            await self._post(reply, self._headers(self.modern, None))

    async def _post(self, message: JsonObject, headers: dict[str, str]) -> None:
        assert self._pool is not None
        async with await self._pool.request("POST", self._path, headers, orjson.dumps(message)) as resp:
            await resp.read()

    def _cancel_upstream(self, request_id: int, reason: str) -> None:
        """2025 servers get an explicit notification; for 2026 closing the POST is the cancellation."""
        if self.modern or self.is_closed or self._pool is None:
            return
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": reason},
        }
        task = asyncio.get_running_loop().create_task(self._post_quietly(note))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _post_quietly(self, message: JsonObject) -> None:
        with contextlib.suppress(HttpClientError, UpstreamError, TimeoutError):
            async with asyncio.timeout(5):
                await self._post(message, self._headers(False, None))

    async def _listen(self) -> None:
        """Receive list_changed notifications: the 2025 GET stream or a 2026 subscriptions/listen stream."""
        assert self._pool is not None
        tools = self.capabilities.get("tools") or {}
        if not tools.get("listChanged"):
            return
        try:
            if self.modern:
                message = {
                    "jsonrpc": "2.0",
                    "id": f"listen-{next(self._ids)}",
                    "method": "subscriptions/listen",
                    "params": self._envelope({"notifications": {"toolsListChanged": True}}),
                }
                resp = await self._pool.request(
                    "POST", self._path, self._headers(True, message), orjson.dumps(message)
                )
            else:
                headers = self._headers(False, None)
                headers["Accept"] = "text/event-stream"
                del headers["Content-Type"]
                resp = await self._pool.request("GET", self._path, headers)
            async with resp:
                if resp.status != 200 or not resp.headers.get("content-type", "").startswith(
                    "text/event-stream"
                ):
                    return
                async for data in iter_sse_data(resp.lines()):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        note = orjson.loads(data)
                        if isinstance(note, dict) and "method" in note and self.on_notification is not None:
                            self.on_notification(note)
        except HttpClientError as exc:
            logger.debug("[%s] notification stream ended: %s", self.server, exc)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._pool is not None:
            if self.session_id is not None and not self.modern and not self.is_closed:
                with contextlib.suppress(HttpClientError, TimeoutError):
                    async with asyncio.timeout(2):
                        headers = self._headers(False, None)
                        async with await self._pool.request("DELETE", self._path, headers) as resp:
                            await resp.read()
            await self._pool.aclose()
        self._mark_closed(self.closed_reason or "closed by the gateway")
