"""Forwarding and auditing the requests that are not tools/call: resources/read, prompts/get,
completion/complete.

The same steps as `toolcall` (which stays the specialised hot path): resolve the name against
the caller's grant (hidden and missing get one answer), forward over the upstream's long-lived
connection, and write exactly one audit row whatever happens, with the row's ``kind`` saying
what was asked. Upstream URIs inside results (read contents, embedded resources and resource
links in prompt messages) are given their gateway URIs, so everything a client is shown can be
read back through the gateway.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

from mcp_gateway.audit.models import ToolCallRow
from mcp_gateway.errors import (
    GatewayError,
    UpstreamFailed,
    UpstreamRpcError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcp_gateway.hub import Binding
from mcp_gateway.server.client_requests_modern import request_for_caller
from mcp_gateway.server.context import RequestContext
from mcp_gateway.server.toolcall import _audit_row, _away, _forward_meta, notification_relay
from mcp_gateway.upstream.base import (
    JsonObject,
    UpstreamError,
    UpstreamRequestTimeout,
    UpstreamUnreachable,
)
from policies.bounds import MAX_ERROR_CHARS, MAX_NAME_CHARS, clip
from policies.outcomes import Outcome

_DETAIL_CHARS = 300


class Audited:
    """One audited request: ``row`` is filled in as it goes and submitted exactly once, on exit.

    The caller sets ``status`` (and ``result``) when the request succeeds; an exception sets
    them from the error that ended it.
    """

    def __init__(self, ctx: RequestContext, kind: str, name: str, arguments: Any) -> None:
        self.ctx = ctx
        self.row: ToolCallRow = _audit_row(ctx, name, arguments)
        self.row["kind"] = kind
        self.upstream_started: float | None = None

    def resolved(self, binding: Binding) -> None:
        """Name the server and the upstream's own name in the row (also for a hidden one)."""
        self.row["server"], self.row["tool"] = binding.server, clip(binding.name, MAX_NAME_CHARS)

    def succeeded(self, result: JsonObject) -> None:
        self.row["result"] = result
        self.row["status"] = Outcome.OK.value

    async def __aenter__(self) -> Audited:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        row = self.row
        if isinstance(exc, UpstreamRpcError):
            row["status"] = exc.outcome.value
            row["error"] = clip(f"upstream JSON-RPC error {exc.code}: {exc.message}", MAX_ERROR_CHARS)
        elif isinstance(exc, GatewayError):
            row["status"] = exc.outcome.value
            if row["error"] is None:
                row["error"] = clip(exc.message, MAX_ERROR_CHARS)
        elif isinstance(exc, asyncio.CancelledError):
            row["status"] = Outcome.CANCELLED.value
            row["error"] = "the client went away or the gateway is stopping"
        elif exc is not None:
            row["status"] = Outcome.GATEWAY_ERROR.value
            row["error"] = clip(f"gateway failure: {type(exc).__name__}: {exc}", MAX_ERROR_CHARS)
        now = time.perf_counter()
        row["latency_ms"] = (now - self.ctx.received_at) * 1000
        if self.upstream_started is not None:
            row["upstream_latency_ms"] = (now - self.upstream_started) * 1000
        if self.ctx.client_requests:
            row["client_requests"] = self.ctx.client_requests
        self.ctx.runtime.audit.submit(row)


def upstream_params(params: JsonObject, field: str, value: Any) -> JsonObject:
    """The client's params for the upstream: ``field`` replaced (the upstream's own name or URI),
    the protocol envelope and progress token left out of ``_meta``."""
    forwarded = dict(params)
    forwarded[field] = value
    meta = _forward_meta(params.get("_meta"))
    if meta is None:
        forwarded.pop("_meta", None)
    else:
        forwarded["_meta"] = meta
    return forwarded


async def request_upstream(
    audit: Audited,
    binding: Binding,
    method: str,
    params: JsonObject,
    *,
    target: str | None = None,
    caller_params: JsonObject | None = None,
) -> JsonObject:
    """Send one request to the binding's server; its result, or the gateway error that says why not.
    With ``target`` (the name or URI the caller used) the request is the caller's own: the
    upstream may put requests to the caller, and its progress and log messages reach it
    (``caller_params``: the caller's params, which name its progress token)."""
    supervisor = binding.supervisor
    conn = supervisor.connection
    if conn is None:
        raise UpstreamUnavailable(binding.server, _away(supervisor))
    audit.upstream_started = time.perf_counter()
    try:
        if target is None:
            reply = await conn.request(method, params, timeout=binding.timeout)
        else:
            relay, token = notification_relay(audit.ctx, caller_params or {})
            reply = await request_for_caller(
                audit.ctx,
                conn,
                method,
                params,
                target,
                timeout=binding.timeout,
                on_notification=relay,
                progress=token is not None,
            )
    except UpstreamRequestTimeout:
        raise UpstreamTimeout(
            f"{method} on server {binding.server!r} did not answer within {binding.timeout:g} s"
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
    supervisor.note_success()
    return result
