"""The /mcp endpoint: streamable HTTP for both protocol eras, as a bare ASGI app.

2025-11-25 clients ``initialize`` and then carry an ``Mcp-Session-Id``
(`legacy`); 2026-07-28 clients send self-contained POSTs marked by
``MCP-Protocol-Version`` (`modern`). Every request is authenticated first,
bodies are size-limited and depth-limited before they are read, and every
failure becomes a JSON-RPC error (or, before JSON-RPC applies, a small JSON body
with the right HTTP status). Responses are plain JSON unless the handler emits
a notification (progress), which switches that response to SSE on the spot.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Receive, Scope, Send

from gateway_common.asgi import ClientGone, send_json
from gateway_common.auth import bearer_token
from mcp_gateway import jsonrpc
from mcp_gateway.errors import GatewayError, HttpProblem, InvalidRequest, jsonrpc_error
from mcp_gateway.server import legacy, modern
from mcp_gateway.server.context import Incoming
from mcp_gateway.server.wire import read_body, read_headers, send_problem

if TYPE_CHECKING:
    from mcp_gateway.runtime import GatewayRuntime

logger = logging.getLogger("mcp_gateway.mcp")


class McpEndpoint:
    """ASGI app for /mcp; its resources come from the lifespan state (``scope["state"]["runtime"]``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: GatewayRuntime = scope["state"]["runtime"]
        received_at = time.perf_counter()
        headers = read_headers(scope)
        try:
            secret = bearer_token(headers.get("authorization"))
            principal, snapshot = await runtime.state.authenticate(secret)
            if principal is None and "authorization" not in headers:
                # mcp.anonymous_key: no credentials at all (never wrong ones) are served as that key.
                principal = snapshot.anonymous_principal()
            if principal is None:
                # A known key past its expiry (or a rotated-out secret past its grace) is told so;
                # anything else gets the same answer, which says nothing about which keys exist.
                refusal = snapshot.refusal(secret) if secret else None
                raise HttpProblem(
                    401,
                    "key_expired" if refusal else "unauthorized",
                    refusal or "Missing or invalid virtual key: send 'Authorization: Bearer <key>'",
                    {"WWW-Authenticate": 'Bearer realm="mcp-gateway"'},
                )
            accept = headers.get("accept", "*/*")
            sse_allowed = "text/event-stream" in accept or "*/*" in accept
            incoming = Incoming(
                runtime, snapshot, principal, headers, receive, send, received_at, sse_allowed
            )
            method = scope["method"]
            if method == "POST":
                await _post(incoming, accept)
            elif method == "GET":
                await legacy.open_stream(incoming)
            elif method == "DELETE":
                await legacy.delete(incoming)
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


async def _post(incoming: Incoming, accept: str) -> None:
    if not (incoming.sse_allowed or "application/json" in accept or "application/*" in accept):
        raise HttpProblem(406, "not_acceptable", "Accept must include application/json or text/event-stream")
    gateway = incoming.snapshot.policy.gateway
    headers, send = incoming.headers, incoming.send
    body = await read_body(incoming.receive, gateway.max_body_bytes, headers.get("content-length"))
    try:
        message = jsonrpc.parse_message(body, max_depth=gateway.max_json_depth)
    except GatewayError as exc:
        await send_json(send, exc.http_status, jsonrpc.error_response(None, jsonrpc_error(exc)))
        return
    if len(body) > gateway.max_initialize_bytes and message.get("method") == "initialize":
        error = InvalidRequest(
            f"initialize is {len(body)} bytes; the gateway accepts at most "
            f"{gateway.max_initialize_bytes} (gateway.max_initialize_bytes). "
            "Send a smaller clientInfo and capabilities"
        )
        await send_json(send, 413, jsonrpc.error_response(message.get("id"), jsonrpc_error(error)))
        return
    version = headers.get("mcp-protocol-version")
    if "mcp-session-id" not in headers and version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        # 2026-07-28, or a version nobody serves: the modern ladder answers the latter with -32022
        # naming the versions served (as the SDK's own server does).
        await modern.post(incoming, message)
    else:
        await legacy.post(incoming, message)
