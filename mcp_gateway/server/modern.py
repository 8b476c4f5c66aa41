"""The 2026-07-28 era: self-contained POSTs, no session.

Every request carries its envelope (``_meta`` protocol version, client info and
capabilities) and the ``Mcp-Method``/``Mcp-Name`` routing headers, checked by the
SDK's inbound ladder before anything runs. ``subscriptions/listen`` replaces the
GET stream; closing a POST is how a client cancels it.
"""

from __future__ import annotations

from typing import Any

from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request

from gateway_common.asgi import send_empty, send_json
from mcp_gateway import jsonrpc
from mcp_gateway.errors import HttpProblem
from mcp_gateway.server.context import Incoming
from mcp_gateway.server.handshake import ClientCapability, client_string, summarize_capabilities
from mcp_gateway.server.methods import LOG_LEVELS, SERVER_INFO, SERVER_INFO_KEY
from mcp_gateway.server.running import rejection_status, run_request
from mcp_gateway.server.streams import serve_listen
from mcp_gateway.server.wire import DUPLICATE_ROUTING_HEADER, Responder

JsonObject = dict[str, Any]
LOG_LEVEL_KEY = "io.modelcontextprotocol/logLevel"
DUPLICATE_HEADER = -32020
"""The code the SDK's ladder uses for a routing header that contradicts the body."""


async def post(incoming: Incoming, message: JsonObject) -> None:
    send = incoming.send
    if "method" not in message or "id" not in message:
        # Notifications and stray responses: nothing to act on in a stateless exchange.
        await send_empty(send, 202)
        return
    request_id = message["id"]
    method: str = message["method"]
    duplicated = incoming.headers.get(DUPLICATE_ROUTING_HEADER)
    verdict = classify_inbound_request(message, headers=incoming.headers)
    if duplicated is not None:
        verdict = InboundLadderRejection(DUPLICATE_HEADER, f"{duplicated} header appears more than once")
    if isinstance(verdict, InboundLadderRejection):
        error: JsonObject = {"code": verdict.code, "message": verdict.message}
        if verdict.data is not None:
            error["data"] = verdict.data
        await send_json(send, rejection_status(verdict.code), jsonrpc.error_response(request_id, error))
        return
    params: JsonObject = message.get("params") or {}
    runtime, principal = incoming.runtime, incoming.principal
    if method == "subscriptions/listen":
        if not incoming.sse_allowed:
            raise HttpProblem(406, "not_acceptable", "subscriptions/listen needs Accept: text/event-stream")
        meta = {SERVER_INFO_KEY: SERVER_INFO}
        await serve_listen(runtime, principal, request_id, params, meta, incoming.receive, send)
        return
    client = verdict.client_info if isinstance(verdict.client_info, dict) else {}
    responder = Responder(send, [], incoming.sse_allowed)
    ctx = incoming.context(
        request_id,
        modern=True,
        protocol_version=verdict.protocol_version,
        client_name=client_string(client, "name"),
        client_version=client_string(client, "version"),
        emit=responder.notify if incoming.sse_allowed else None,
        capabilities=_capabilities(verdict.client_capabilities),
        log_level=_log_level(params),
    )
    await run_request(
        ctx, method, params, responder, incoming.receive, cancel_on_disconnect=method == "tools/call"
    )


def _capabilities(declared: Any) -> ClientCapability:
    return (
        summarize_capabilities(declared) if isinstance(declared, dict) and declared else ClientCapability.NONE
    )


def _log_level(params: JsonObject) -> str | None:
    """The request's ``io.modelcontextprotocol/logLevel``: 2026 log messages are opt-in per request."""
    meta = params.get("_meta")
    level = meta.get(LOG_LEVEL_KEY) if isinstance(meta, dict) else None
    return level if level in LOG_LEVELS else None
