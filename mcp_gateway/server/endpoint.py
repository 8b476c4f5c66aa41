"""The /mcp endpoint: streamable HTTP for both protocol eras, as a bare ASGI app.

2025-11-25 clients ``initialize`` and then carry an ``Mcp-Session-Id``;
2026-07-28 clients send self-contained POSTs marked by ``MCP-Protocol-Version``.
Every request is authenticated first, bodies are size-limited before they are
parsed, and every failure becomes a JSON-RPC error (or, before JSON-RPC
applies, a small JSON body with the right HTTP status). Responses are plain
JSON unless the handler emits a notification (progress), which switches that
response to SSE on the spot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.types import Receive, Scope, Send

from policies import Principal
from policies.bounds import echo

from .. import jsonrpc
from ..errors import GatewayError, HttpProblem, InvalidParams, InvalidRequest, jsonrpc_error
from .context import RequestContext
from .methods import SERVER_INFO, SERVER_INFO_KEY, dispatch, initialize_result, negotiate_version
from .sessions import Session
from .streams import serve_listen, serve_session_stream
from .wire import (
    DUPLICATE_ROUTING_HEADER,
    ClientGone,
    Responder,
    read_body,
    read_headers,
    send_empty,
    send_json,
    send_problem,
)

if TYPE_CHECKING:
    from ..runtime import GatewayRuntime

logger = logging.getLogger("mcp_gateway.mcp")

JsonObject = dict[str, Any]
REQUEST_CANCELLED = -32800
_WATCH_AFTER = 0.02
"""Seconds after which a 2026 tools/call starts watching for the client closing the POST."""


def _rejection_status(code: int) -> int:
    return ERROR_CODE_HTTP_STATUS.get(code, 200)


class McpEndpoint:
    """ASGI app for /mcp; its resources come from the lifespan state (``scope["state"]["runtime"]``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: GatewayRuntime = scope["state"]["runtime"]
        received_at = time.perf_counter()
        headers = read_headers(scope)
        try:
            principal = await runtime.keys.authenticate(headers.get("authorization"))
            if principal is None:
                raise HttpProblem(
                    401,
                    "unauthorized",
                    "Missing or invalid virtual key: send 'Authorization: Bearer <key>'",
                    {"WWW-Authenticate": 'Bearer realm="mcp-gateway"'},
                )
            method = scope["method"]
            if method == "POST":
                await self._post(runtime, principal, headers, scope, receive, send, received_at)
            elif method == "GET":
                await self._get(runtime, principal, headers, receive, send)
            elif method == "DELETE":
                await self._delete(runtime, principal, headers, send)
            else:
                raise HttpProblem(
                    405,
                    "method_not_allowed",
                    f"{method} is not supported on /mcp",
                    {"Allow": "GET, POST, DELETE"},
                )
        except HttpProblem as problem:
            await send_problem(send, problem)
        except ClientGone:
            return
        except Exception:
            # /mcp is dispatched before Starlette's error middleware: this is its last line.
            logger.exception("unexpected failure on /mcp")
            with contextlib.suppress(Exception):
                await send_problem(send, HttpProblem(500, "internal_error", "Internal error in the gateway"))

    # -- POST ----------------------------------------------------------------------------

    async def _post(
        self,
        runtime: GatewayRuntime,
        principal: Principal,
        headers: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
        received_at: float,
    ) -> None:
        accept = headers.get("accept", "*/*")
        sse_allowed = "text/event-stream" in accept or "*/*" in accept
        if not (sse_allowed or "application/json" in accept or "application/*" in accept):
            raise HttpProblem(
                406, "not_acceptable", "Accept must include application/json or text/event-stream"
            )
        body = await read_body(receive, runtime.policy.gateway.max_body_bytes, headers.get("content-length"))
        try:
            message = jsonrpc.parse_message(body, max_depth=runtime.policy.gateway.max_json_depth)
        except GatewayError as exc:
            await send_json(send, exc.http_status, jsonrpc.error_response(None, jsonrpc_error(exc)))
            return
        version = headers.get("mcp-protocol-version")
        session_id = headers.get("mcp-session-id")
        if session_id is None and version in MODERN_PROTOCOL_VERSIONS:
            await self._post_modern(
                runtime, principal, headers, scope, message, receive, send, received_at, sse_allowed
            )
        else:
            await self._post_legacy(
                runtime, principal, headers, message, receive, send, received_at, sse_allowed
            )

    async def _post_modern(
        self,
        runtime: GatewayRuntime,
        principal: Principal,
        headers: dict[str, str],
        scope: Scope,
        message: JsonObject,
        receive: Receive,
        send: Send,
        received_at: float,
        sse_allowed: bool,
    ) -> None:
        if "method" not in message or "id" not in message:
            # Notifications and stray responses: nothing to act on in a stateless exchange.
            await send_empty(send, 202)
            return
        request_id = message["id"]
        method: str = message["method"]
        duplicated = headers.get(DUPLICATE_ROUTING_HEADER)
        verdict = classify_inbound_request(message, headers=headers)
        if duplicated is not None:
            verdict = InboundLadderRejection(-32020, f"{duplicated} header appears more than once")
        if isinstance(verdict, InboundLadderRejection):
            error: JsonObject = {"code": verdict.code, "message": verdict.message}
            if verdict.data is not None:
                error["data"] = verdict.data
            await send_json(send, _rejection_status(verdict.code), jsonrpc.error_response(request_id, error))
            return
        params: JsonObject = message.get("params") or {}
        grant = runtime.grant(principal)
        if method == "subscriptions/listen":
            if not sse_allowed:
                raise HttpProblem(
                    406, "not_acceptable", "subscriptions/listen needs Accept: text/event-stream"
                )
            await serve_listen(
                runtime, principal, grant, request_id, params, {SERVER_INFO_KEY: SERVER_INFO}, receive, send
            )
            return
        client_info = verdict.client_info if isinstance(verdict.client_info, dict) else None
        responder = Responder(send, [], sse_allowed)
        ctx = RequestContext(
            runtime,
            principal,
            grant,
            True,
            verdict.protocol_version,
            client_info,
            None,
            request_id,
            responder.notify if sse_allowed else None,
            received_at,
        )
        # In this era closing the POST is how a client cancels.
        await self._run(ctx, method, params, responder, receive, cancel_on_disconnect=method == "tools/call")

    async def _post_legacy(
        self,
        runtime: GatewayRuntime,
        principal: Principal,
        headers: dict[str, str],
        message: JsonObject,
        receive: Receive,
        send: Send,
        received_at: float,
        sse_allowed: bool,
    ) -> None:
        method = message.get("method")
        session_id = headers.get("mcp-session-id")
        if method == "initialize" and "id" in message:
            await self._initialize(runtime, principal, message, send, received_at)
            return
        if session_id is None:
            error = InvalidRequest(
                "Bad Request: no Mcp-Session-Id header. Send initialize first (2025-11-25), "
                "or use MCP-Protocol-Version: 2026-07-28 for stateless requests"
            )
            await send_json(send, 400, jsonrpc.error_response(message.get("id"), jsonrpc_error(error)))
            return
        session = runtime.sessions.get(session_id, principal)
        if session is None:
            await send_json(
                send,
                404,
                jsonrpc.error_response(message.get("id"), {"code": -32600, "message": "Session not found"}),
            )
            return
        version = headers.get("mcp-protocol-version")
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            error = InvalidRequest(
                f"Unsupported MCP-Protocol-Version {echo(version)}; "
                f"supported: {', '.join(HANDSHAKE_PROTOCOL_VERSIONS)}"
            )
            await send_json(send, 400, jsonrpc.error_response(message.get("id"), jsonrpc_error(error)))
            return
        session_header = [(b"mcp-session-id", session.id.encode())]
        if method is None or "id" not in message:
            if method == "notifications/cancelled":
                self._cancel(session, message.get("params") or {})
            await send_empty(send, 202, session_header)
            return
        responder = Responder(send, session_header, sse_allowed)
        ctx = RequestContext(
            runtime,
            principal,
            runtime.grant(principal),
            False,
            session.protocol_version,
            session.client_info,
            session,
            message["id"],
            responder.notify if sse_allowed else None,
            received_at,
        )
        task = asyncio.current_task()
        assert task is not None
        request_id = message["id"]
        session.in_flight[request_id] = task
        try:
            await self._run(
                ctx, method, message.get("params") or {}, responder, receive, cancel_on_disconnect=False
            )
        finally:
            session.in_flight.pop(request_id, None)

    async def _initialize(
        self,
        runtime: GatewayRuntime,
        principal: Principal,
        message: JsonObject,
        send: Send,
        received_at: float,
    ) -> None:
        params = message.get("params") or {}
        client_info = params.get("clientInfo")
        capabilities = params.get("capabilities", {})
        if not isinstance(client_info, dict) or not isinstance(capabilities, dict):
            error = InvalidParams("initialize needs params.clientInfo and params.capabilities (objects)")
            await send_json(send, 200, jsonrpc.error_response(message["id"], jsonrpc_error(error)))
            return
        version = negotiate_version(params.get("protocolVersion"))
        session = runtime.sessions.create(principal, version, client_info, capabilities)
        ctx = RequestContext(
            runtime,
            principal,
            runtime.grant(principal),
            False,
            version,
            client_info,
            session,
            message["id"],
            None,
            received_at,
        )
        logger.info(
            "session %s opened by key %s (%s %s, protocol %s)",
            session.id[:8],
            principal.key_id,
            session.client_name,
            session.client_version,
            version,
        )
        await send_json(
            send,
            200,
            jsonrpc.response(message["id"], initialize_result(ctx, version)),
            [(b"mcp-session-id", session.id.encode())],
        )

    @staticmethod
    def _cancel(session: Session, params: JsonObject) -> None:
        request_id = params.get("requestId")
        if isinstance(request_id, bool) or not isinstance(request_id, str | int):
            return  # no request of this session has such an id (a list or an object cannot even be looked up)
        task = session.in_flight.get(request_id)
        if task is not None and not task.done():
            session.cancelled_ids.add(request_id)
            task.cancel()

    async def _run(
        self,
        ctx: RequestContext,
        method: str,
        params: JsonObject,
        responder: Responder,
        receive: Receive,
        *,
        cancel_on_disconnect: bool,
    ) -> None:
        """Dispatch one request and write its answer; cancellation by the client ends it quietly."""
        task = asyncio.current_task()
        assert task is not None
        gone = False
        watcher: asyncio.Future[Any] | None = None
        arming: asyncio.TimerHandle | None = None
        if cancel_on_disconnect:

            def on_receive(fut: asyncio.Future[Any]) -> None:
                nonlocal gone
                if (
                    not fut.cancelled()
                    and fut.exception() is None
                    and fut.result()["type"] == "http.disconnect"
                ):
                    gone = True
                    task.cancel()

            def arm() -> None:
                # Armed only for calls still running after a moment: fast calls never pay for a task.
                nonlocal watcher
                watcher = asyncio.ensure_future(receive())
                watcher.add_done_callback(on_receive)

            arming = asyncio.get_running_loop().call_later(_WATCH_AFTER, arm)
        request_id = ctx.request_id
        try:
            result = await dispatch(ctx, method, params)
        except asyncio.CancelledError:
            session = ctx.session
            by_client = session is not None and request_id in session.cancelled_ids
            if (gone or by_client) and task.uncancel() == 0:
                if by_client and session is not None:
                    session.cancelled_ids.discard(request_id)
                    error = {"code": REQUEST_CANCELLED, "message": "Request cancelled"}
                    await responder.finish(jsonrpc.error_response(request_id, error))
                return
            raise
        except GatewayError as exc:
            status = _rejection_status(exc.code) if ctx.modern else 200
            await responder.finish(jsonrpc.error_response(request_id, jsonrpc_error(exc)), status)
            return
        except Exception:
            logger.exception("unexpected failure serving %s", method)
            await responder.finish(jsonrpc.error_response(request_id, jsonrpc_error(RuntimeError())))
            return
        finally:
            if arming is not None:
                arming.cancel()
            if watcher is not None and not watcher.done():
                watcher.cancel()
        await responder.finish(jsonrpc.response(request_id, result))

    # -- GET / DELETE --------------------------------------------------------------------

    def _session_or_problem(
        self, runtime: GatewayRuntime, principal: Principal, headers: dict[str, str]
    ) -> Session:
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            raise HttpProblem(400, "bad_request", "Mcp-Session-Id header is required")
        session = runtime.sessions.get(session_id, principal)
        if session is None:
            raise HttpProblem(404, "session_not_found", "Session not found")
        return session

    async def _get(
        self,
        runtime: GatewayRuntime,
        principal: Principal,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
    ) -> None:
        if (
            headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS
            and "mcp-session-id" not in headers
        ):
            raise HttpProblem(
                405,
                "method_not_allowed",
                "2026-07-28 has no GET stream; use subscriptions/listen",
                {"Allow": "POST"},
            )
        session = self._session_or_problem(runtime, principal, headers)
        if "text/event-stream" not in headers.get("accept", ""):
            raise HttpProblem(406, "not_acceptable", "the GET stream needs Accept: text/event-stream")
        if session.stream_open:
            raise HttpProblem(409, "conflict", "this session already has an open GET stream")
        await serve_session_stream(
            runtime,
            session,
            runtime.grant(principal),
            receive,
            send,
            [(b"mcp-session-id", session.id.encode())],
        )

    async def _delete(
        self, runtime: GatewayRuntime, principal: Principal, headers: dict[str, str], send: Send
    ) -> None:
        session = self._session_or_problem(runtime, principal, headers)
        runtime.sessions.close(session)
        logger.info("session %s closed by the client", session.id[:8])
        await send_empty(send, 200)
