"""tools/call: check, forward, audit. The hot path of the gateway.

The call is re-checked against the caller's grant (a hidden tool and a missing
one get the same error), forwarded as raw JSON-RPC over the upstream's
long-lived connection, and audited exactly once whatever happens, including
cancellation. Arguments and results pass through untouched.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from mcp.shared.inbound import mcp_param_headers

from ..errors import (
    GatewayError,
    InvalidParams,
    RateLimited,
    UnknownTool,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..hub import ToolBinding
from ..upstream.base import ENVELOPE_PREFIX, JsonObject, UpstreamError, UpstreamRequestTimeout
from .context import RequestContext


class UpstreamRpcError(GatewayError):
    """A JSON-RPC error the upstream returned; relayed to the client as it is."""

    def __init__(self, error: JsonObject) -> None:
        super().__init__(str(error.get("message", "upstream error")), error.get("data"))
        code = error.get("code")
        self.code = code if isinstance(code, int) else -32603


_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def new_row_id() -> str:
    """Unique across processes and restarts (random per-process prefix + counter), without a syscall."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _audit_row(ctx: RequestContext, name: str, arguments: Any) -> dict[str, Any]:
    request_id = ctx.request_id
    return {
        "id": new_row_id(),
        "timestamp": datetime.now(UTC),
        "request_id": None if request_id is None else str(request_id),
        "key_id": ctx.principal.key_id,
        "key_name": ctx.principal.key_name,
        "team": ctx.principal.team,
        "client_name": ctx.client_name,
        "client_version": ctx.client_version,
        "session_id": ctx.session.id if ctx.session else None,
        "protocol_version": ctx.protocol_version,
        "exposed_name": name,
        "server": None,
        "tool": None,
        "arguments": arguments,
        "arguments_truncated": False,
        "result": None,
        "result_truncated": False,
        "status": "denied",
        "error": None,
        "latency_ms": 0.0,
        "upstream_latency_ms": None,
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
        binding = ctx.runtime.hub.resolve(name, ctx.grant)
        if binding is None:
            raise UnknownTool(name)
        row["server"], row["tool"] = binding.server, binding.tool
        limiter = ctx.runtime.limiter
        if limiter is not None:
            decision = await limiter.acquire_tool_call(ctx.principal)
            if not decision.allowed:
                raise RateLimited(decision.message, decision.retry_after)
        upstream_started = time.perf_counter()
        result = await _forward(ctx, binding, params, arguments)
        row["result"] = result
        row["status"] = "tool_error" if result.get("isError") is True else "ok"
        binding.supervisor.note_success()
        return result
    except UpstreamRpcError as exc:
        row["status"], row["error"] = "upstream_error", f"upstream JSON-RPC error {exc.code}: {exc.message}"
        raise
    except UpstreamTimeout as exc:
        row["status"], row["error"] = "timeout", exc.message
        raise
    except UpstreamUnavailable as exc:
        row["status"], row["error"] = "upstream_error", exc.message
        raise
    except GatewayError as exc:
        row["status"], row["error"] = "denied", exc.message
        raise
    except asyncio.CancelledError:
        row["status"], row["error"] = "cancelled", "the client went away or the gateway is stopping"
        raise
    except BaseException as exc:
        row["status"], row["error"] = "upstream_error", f"gateway failure: {type(exc).__name__}: {exc}"
        raise
    finally:
        now = time.perf_counter()
        row["latency_ms"] = (now - ctx.received_at) * 1000
        if upstream_started is not None:
            row["upstream_latency_ms"] = (now - upstream_started) * 1000
        ctx.runtime.audit.submit(row)


async def _forward(
    ctx: RequestContext, binding: ToolBinding, params: JsonObject, arguments: JsonObject | None
) -> JsonObject:
    supervisor = binding.supervisor
    conn = supervisor.connection
    if conn is None:
        detail = f": {supervisor.last_error}" if supervisor.last_error else ""
        raise UpstreamUnavailable(
            f"server {binding.server!r} is unavailable ({supervisor.state}{detail}); "
            "the gateway is reconnecting, try again shortly"
        )
    upstream_params = dict(params)
    upstream_params["name"] = binding.tool
    meta = _forward_meta(params.get("_meta"))
    if meta is None:
        upstream_params.pop("_meta", None)
    else:
        upstream_params["_meta"] = meta

    on_progress = None
    client_meta = params.get("_meta")
    token = client_meta.get("progressToken") if isinstance(client_meta, dict) else None
    emit = ctx.emit
    if token is not None and emit is not None:

        async def on_progress(message: JsonObject) -> None:
            relayed = dict(message)
            note_params = dict(relayed.get("params") or {})
            if "progressToken" in note_params:
                note_params["progressToken"] = token
            relayed["params"] = note_params
            await emit(relayed)

    headers = None
    if binding.param_headers and getattr(conn, "modern", False):
        headers = mcp_param_headers(binding.param_headers, arguments or {})
    try:
        reply = await conn.request(
            "tools/call",
            upstream_params,
            timeout=binding.timeout,
            on_notification=on_progress,
            headers=headers,
        )
    except UpstreamRequestTimeout:
        raise UpstreamTimeout(
            f"tool {binding.exposed_name!r} on server {binding.server!r} "
            f"did not answer within {binding.timeout:g} s"
        ) from None
    except UpstreamError as exc:
        raise UpstreamUnavailable(f"server {binding.server!r} failed during the call: {exc}") from None
    error = reply.get("error")
    if error is not None:
        raise UpstreamRpcError(error if isinstance(error, dict) else {"message": str(error)})
    result = reply.get("result")
    if not isinstance(result, dict):
        raise UpstreamUnavailable(f"server {binding.server!r} returned a malformed result")
    return result
