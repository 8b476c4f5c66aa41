"""The 2025-11-25 era: ``initialize`` opens a session, ``Mcp-Session-Id`` carries it.

A session belongs to the key that opened it (`sessions`); its GET stream carries
``list_changed`` notifications; ``notifications/cancelled`` cancels a request in
flight; DELETE ends the session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from gateway_common.asgi import send_empty, send_json
from mcp_gateway import jsonrpc
from mcp_gateway.errors import HttpProblem, InvalidParams, InvalidRequest, jsonrpc_error
from mcp_gateway.server.context import Incoming
from mcp_gateway.server.handshake import client_string, summarize_capabilities
from mcp_gateway.server.methods import initialize_result, negotiate_version
from mcp_gateway.server.resources import restore_subscriptions
from mcp_gateway.server.running import run_request
from mcp_gateway.server.sessions import Session, SessionLimitReached
from mcp_gateway.server.streams import serve_session_stream
from mcp_gateway.server.wire import Responder
from policies.bounds import echo

logger = logging.getLogger("mcp_gateway.mcp")

JsonObject = dict[str, Any]
ANSWERS_ONLY_HERE = frozenset({"tools/call", "prompts/get", "resources/read"})
"""Requests whose answer can reach the client only on its POST (the gateway keeps no event ids for
resuming a stream): a client that closes that POST will never see it, so its going away cancels
the request, upstream too (a 2025 client that wants to cancel still says so explicitly)."""


async def post(incoming: Incoming, message: JsonObject) -> None:
    send = incoming.send
    method = message.get("method")
    if method == "initialize" and "id" in message:
        await initialize(incoming, message)
        return
    session_id = incoming.headers.get("mcp-session-id")
    if session_id is None:
        error = InvalidRequest(
            "Bad Request: no Mcp-Session-Id header. Send initialize first (2025-11-25), "
            "or use MCP-Protocol-Version: 2026-07-28 for stateless requests"
        )
        await send_json(send, 400, jsonrpc.error_response(message.get("id"), jsonrpc_error(error)))
        return
    try:
        session = incoming.runtime.sessions.get(session_id, incoming.principal)
    except SessionLimitReached as exc:
        answer = jsonrpc.error_response(message.get("id"), jsonrpc_error(exc))
        await send_json(send, exc.http_status, answer, [(b"retry-after", b"60")])
        return
    if session is None:
        not_found = {"code": -32600, "message": "Session not found"}
        await send_json(send, 404, jsonrpc.error_response(message.get("id"), not_found))
        return
    if session.restore_pending:
        await restore_subscriptions(incoming.runtime, session)
    version = incoming.headers.get("mcp-protocol-version")
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
            cancel(session, message.get("params") or {})
        elif method is None:
            session.answer(message)  # the client's answer to a request the gateway put to it
        await send_empty(send, 202, session_header)
        return
    request_id = message["id"]
    responder = Responder(send, session_header, incoming.sse_allowed)
    ctx = incoming.context(
        request_id,
        modern=False,
        protocol_version=session.protocol_version,
        client_name=session.client_name,
        client_version=session.client_version,
        session=session,
        emit=responder.notify if incoming.sse_allowed else None,
        capabilities=session.capabilities,
        log_level=session.log_level,
    )
    task = asyncio.current_task()
    assert task is not None
    session.in_flight[request_id] = task
    try:
        params = message.get("params") or {}
        await run_request(
            ctx, method, params, responder, incoming.receive, cancel_on_disconnect=method in ANSWERS_ONLY_HERE
        )
    finally:
        session.in_flight.pop(request_id, None)


async def initialize(incoming: Incoming, message: JsonObject) -> None:
    runtime, principal, send = incoming.runtime, incoming.principal, incoming.send
    params = message.get("params") or {}
    client_info = params.get("clientInfo")
    capabilities = params.get("capabilities", {})
    if not isinstance(client_info, dict) or not isinstance(capabilities, dict):
        error = InvalidParams("initialize needs params.clientInfo and params.capabilities (objects)")
        await send_json(send, 200, jsonrpc.error_response(message["id"], jsonrpc_error(error)))
        return
    version = negotiate_version(params.get("protocolVersion"))
    try:
        session = runtime.sessions.create(
            principal,
            version,
            client_string(client_info, "name"),
            client_string(client_info, "version"),
            summarize_capabilities(capabilities),
        )
    except SessionLimitReached as exc:
        logger.warning("initialize by key %s refused: %s", principal.key_id, exc.message)
        answer = jsonrpc.error_response(message["id"], jsonrpc_error(exc))
        await send_json(send, exc.http_status, answer, [(b"retry-after", b"60")])
        return
    logger.info(
        "session %s opened by key %s (%s %s, protocol %s)",
        session.id[:8],
        principal.key_id,
        session.client_name,
        session.client_version,
        version,
    )
    result = initialize_result(incoming.snapshot.policy, version, runtime.hub.capabilities)
    answer = jsonrpc.response(message["id"], result)
    await send_json(send, 200, answer, [(b"mcp-session-id", session.id.encode())])


def cancel(session: Session, params: JsonObject) -> None:
    """``notifications/cancelled``: cancel that request of this session if it is still running."""
    request_id = params.get("requestId")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return  # no request of this session has such an id (a list or an object cannot even be looked up)
    task = session.in_flight.get(request_id)
    if task is not None and not task.done():
        session.cancelled_ids.add(request_id)
        task.cancel()


def _session_or_problem(incoming: Incoming) -> Session:
    session_id = incoming.headers.get("mcp-session-id")
    if session_id is None:
        raise HttpProblem(400, "bad_request", "Mcp-Session-Id header is required")
    try:
        session = incoming.runtime.sessions.get(session_id, incoming.principal)
    except SessionLimitReached as exc:
        raise HttpProblem(503, "session_limit", exc.message, {"Retry-After": "60"}) from None
    if session is None:
        raise HttpProblem(404, "session_not_found", "Session not found")
    return session


async def _session_here(incoming: Incoming) -> Session:
    """The request's session, its subscriptions restored if it was just rebuilt here."""
    session = _session_or_problem(incoming)
    if session.restore_pending:
        await restore_subscriptions(incoming.runtime, session)
    return session


async def open_stream(incoming: Incoming) -> None:
    """GET: the session's stream of server-to-client notifications."""
    headers = incoming.headers
    if headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS and "mcp-session-id" not in headers:
        raise HttpProblem(
            405,
            "method_not_allowed",
            "2026-07-28 has no GET stream; use subscriptions/listen",
            {"Allow": "POST"},
        )
    session = await _session_here(incoming)
    if "text/event-stream" not in headers.get("accept", ""):
        raise HttpProblem(406, "not_acceptable", "the GET stream needs Accept: text/event-stream")
    if session.stream_open:
        raise HttpProblem(409, "conflict", "this session already has an open GET stream")
    runtime = incoming.runtime
    await serve_session_stream(
        runtime,
        session,
        incoming.receive,
        incoming.send,
        [(b"mcp-session-id", session.id.encode())],
    )


async def delete(incoming: Incoming) -> None:
    """DELETE: the client ends its session."""
    session = _session_or_problem(incoming)
    incoming.runtime.sessions.end(session)
    await incoming.runtime.subscriptions.forget(session.id)
    logger.info("session %s closed by the client", session.id[:8])
    await send_empty(incoming.send, 200)
