"""tools/call: check, forward, audit. The hot path of the gateway.

The call is re-checked against the caller's grant (a hidden tool and a missing
one get the same error, though the row of a hidden one names its server and
tool), forwarded as raw JSON-RPC over the upstream's long-lived connection, and
audited exactly once whatever happens, including cancellation. Arguments and
results pass through untouched, but for resource links and embedded resources in a
result, which get their gateway URIs (`links`). A tool the caller may use whose server is down
or restarting gets a retryable `UpstreamUnavailable`, never "Unknown tool".

Each row's status is an `Outcome` (the error that ended the call names it);
client strings stored in the row are clipped to `policies.bounds` sizes.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from mcp.shared.inbound import mcp_param_headers

from mcp_gateway.audit.models import ToolCallRow
from mcp_gateway.errors import (
    GatewayError,
    InvalidParams,
    RateLimited,
    UnknownTool,
    UpstreamFailed,
    UpstreamRpcError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcp_gateway.hub import ToolBinding
from mcp_gateway.server.client_requests import log_wanted
from mcp_gateway.server.client_requests_modern import request_for_caller
from mcp_gateway.server.context import RequestContext
from mcp_gateway.server.links import expose_result_links, has_links
from mcp_gateway.upstream.base import (
    ENVELOPE_PREFIX,
    JsonObject,
    NotificationHandler,
    UpstreamError,
    UpstreamRequestTimeout,
    UpstreamUnreachable,
)
from mcp_gateway.upstream.supervisor import UpstreamSupervisor
from policies.bounds import MAX_ERROR_CHARS, MAX_ID_CHARS, MAX_NAME_CHARS, clip
from policies.outcomes import Outcome

_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()
_OK = Outcome.OK.value
_TOOL_ERROR = Outcome.TOOL_ERROR.value
_GATEWAY_ERROR = Outcome.GATEWAY_ERROR.value
"""Plain strings for the hot path (an enum's ``.value`` costs a descriptor call)."""
_DETAIL_CHARS = 300
"""How much of an upstream's own failure text (e.g. its last stderr line) an error message quotes."""


def new_row_id() -> str:
    """Unique across processes and restarts (random per-process prefix + counter), without a syscall."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _audit_row(ctx: RequestContext, name: str, arguments: Any) -> ToolCallRow:
    # Client strings are clipped where they are long (inline checks: this runs on every call).
    # The protocol version needs none: it is always one the gateway itself supports.
    request_id = ctx.request_id
    if request_id is not None:
        request_id = str(request_id)  # an integer id is at most 20 digits (orjson: 64 bits)
        if len(request_id) > MAX_ID_CHARS:
            request_id = clip(request_id, MAX_ID_CHARS)
    return {
        "id": new_row_id(),
        "timestamp": datetime.now(UTC),
        "request_id": request_id,
        "key_id": ctx.principal.key_id,
        "key_name": ctx.principal.key_name,
        "team": ctx.principal.team,
        "client_name": ctx.client_name,  # clipped when the context was made
        "client_version": ctx.client_version,
        "session_id": ctx.session.id if ctx.session else None,
        "protocol_version": ctx.protocol_version,
        "kind": "tool",
        "exposed_name": name if len(name) <= MAX_NAME_CHARS else clip(name, MAX_NAME_CHARS),
        "server": None,
        "tool": None,
        "arguments": arguments,
        "arguments_truncated": False,
        "result": None,
        "result_truncated": False,
        "status": _GATEWAY_ERROR,  # replaced by the real outcome before the row is submitted
        "error": None,
        "blocked_by": None,
        "latency_ms": 0.0,
        "upstream_latency_ms": None,
        "client_requests": None,
    }


def _forward_meta(meta: Any) -> JsonObject | None:
    """The caller's ``_meta`` minus the protocol envelope and its progress token (we set our own)."""
    if not isinstance(meta, dict) or not meta:
        return None
    kept = {k: v for k, v in meta.items() if k != "progressToken" and not k.startswith(ENVELOPE_PREFIX)}
    return kept or None


async def call_tool(ctx: RequestContext, params: JsonObject) -> JsonObject:
    name = params.get("name")
    arguments = params.get("arguments")
    row = _audit_row(ctx, name if isinstance(name, str) else repr(name), arguments)
    upstream_started: float | None = None
    try:
        if not isinstance(name, str):
            raise InvalidParams('tools/call needs "name" (a string)')
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidParams('tools/call "arguments" must be an object')
        binding, permitted = ctx.runtime.hub.lookup(name, ctx.grant)
        if binding is None:
            raise UnknownTool(name)
        row["server"], row["tool"] = binding.server, binding.tool
        if not permitted:
            raise UnknownTool(name)  # the same answer as a tool that does not exist
        limiter = ctx.runtime.limiter
        if limiter is not None:
            decision = await limiter.acquire_tool_call(ctx.snapshot.rate_plan(ctx.principal))
            if not decision.allowed:
                row["blocked_by"] = decision.blocked_by
                raise RateLimited(decision.message, decision.retry_after, decision.blocked_by)
        upstream_started = time.perf_counter()
        result = await _forward(ctx, binding, params, arguments)
        content = result.get("content")
        if type(content) is list and has_links(content):
            result = expose_result_links(result, binding.server)  # readable back through the gateway
        row["result"] = result
        row["status"] = _TOOL_ERROR if result.get("isError") is True else _OK
        binding.supervisor.note_success()
        return result
    except UpstreamRpcError as exc:
        row["status"] = exc.outcome.value
        row["error"] = clip(f"upstream JSON-RPC error {exc.code}: {exc.message}", MAX_ERROR_CHARS)
        raise
    except GatewayError as exc:
        row["status"], row["error"] = exc.outcome.value, clip(exc.message, MAX_ERROR_CHARS)
        raise
    except asyncio.CancelledError:
        row["status"] = Outcome.CANCELLED.value
        row["error"] = "the client went away or the gateway is stopping"
        raise
    except BaseException as exc:
        row["status"] = _GATEWAY_ERROR
        row["error"] = clip(f"gateway failure: {type(exc).__name__}: {exc}", MAX_ERROR_CHARS)
        raise
    finally:
        now = time.perf_counter()
        row["latency_ms"] = (now - ctx.received_at) * 1000
        if upstream_started is not None:
            row["upstream_latency_ms"] = (now - upstream_started) * 1000
        if ctx.client_requests:
            row["client_requests"] = ctx.client_requests
        ctx.runtime.audit.submit(row)


def notification_relay(ctx: RequestContext, params: JsonObject) -> tuple[NotificationHandler | None, Any]:
    """What relays a call's progress (with the caller's own token) and log messages (at or above the
    caller's level) to the caller's response stream; and the caller's progress token."""
    client_meta = params.get("_meta")
    token = client_meta.get("progressToken") if isinstance(client_meta, dict) else None
    emit = ctx.emit
    level = ctx.log_level
    if emit is None or (token is None and level is None):
        return None, token

    async def relay(message: JsonObject) -> None:
        if message.get("method") == "notifications/message":
            if log_wanted(level, message):
                await emit(message)
            return
        if token is None:
            return
        relayed = dict(message)
        note_params = dict(relayed.get("params") or {})
        if "progressToken" in note_params:
            note_params["progressToken"] = token
        relayed["params"] = note_params
        await emit(relayed)

    return relay, token


def _away(supervisor: UpstreamSupervisor) -> str:
    """Why a server has no connection right now, e.g. ``restarting: process exited with code 3``."""
    state = "restarting" if supervisor.state == "starting" and supervisor.restarts else supervisor.state
    detail = f"{state}: {supervisor.last_error}" if supervisor.last_error else state
    return clip(detail, _DETAIL_CHARS) or state


async def _forward(
    ctx: RequestContext, binding: ToolBinding, params: JsonObject, arguments: JsonObject | None
) -> JsonObject:
    supervisor = binding.supervisor
    conn = supervisor.connection
    if conn is None:
        raise UpstreamUnavailable(binding.server, _away(supervisor))
    upstream_params = dict(params)
    upstream_params["name"] = binding.tool
    meta = _forward_meta(params.get("_meta"))
    if meta is None:
        upstream_params.pop("_meta", None)
    else:
        upstream_params["_meta"] = meta

    headers = None
    if binding.param_headers and getattr(conn, "modern", False):
        headers = mcp_param_headers(binding.param_headers, arguments or {})
    relay, token = notification_relay(ctx, params)
    try:
        reply = await request_for_caller(
            ctx,
            conn,
            "tools/call",
            upstream_params,
            binding.exposed_name,
            timeout=binding.timeout,
            on_notification=relay,
            headers=headers,
            progress=token is not None,
        )
    except UpstreamRequestTimeout:
        raise UpstreamTimeout(
            f"tool {binding.exposed_name!r} on server {binding.server!r} "
            f"did not answer within {binding.timeout:g} s"
        ) from None
    except UpstreamUnreachable as exc:
        supervisor.note_failure()
        raise UpstreamUnavailable(binding.server, clip(str(exc), _DETAIL_CHARS) or "unreachable") from None
    except UpstreamError as exc:
        supervisor.note_failure()
        raise UpstreamFailed(binding.server, clip(str(exc), _DETAIL_CHARS) or "unknown failure") from None
    error = reply.get("error")
    if error is not None:
        raise UpstreamRpcError(error if isinstance(error, dict) else {"message": str(error)})
    result = reply.get("result")
    if not isinstance(result, dict):
        raise UpstreamFailed(binding.server, "its result is not a JSON object")
    return result
