"""Gateway errors and the one place they are turned into wire messages.

Domain code raises these; only the /mcp endpoint calls `jsonrpc_error` (and
`http_status`) to decide what a client sees. Messages are written for the
person reading them in Claude Code: they say what happened and, where it helps,
what to do. Any client string quoted in a message goes through `policies.bounds.echo`
(bounded, quoted). Each error also names the `Outcome` an audit row records for it.
"""

from __future__ import annotations

from typing import Any

from mcp_types.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_TIMEOUT,
)

from policies.bounds import echo
from policies.outcomes import Outcome

# Implementation-defined codes (-32000..-32019 is ours; -32000/-32001/-32002 are taken or retired).
UPSTREAM_UNAVAILABLE = -32010
RATE_LIMITED = -32011

JsonRpcId = str | int | None


class GatewayError(Exception):
    """Base class: a JSON-RPC code, a message for the client and optional data."""

    code: int = INTERNAL_ERROR
    http_status: int = 200
    outcome: Outcome = Outcome.GATEWAY_ERROR
    """What an audit row records when this error ends a call."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ParseError(GatewayError):
    code = PARSE_ERROR
    http_status = 400
    outcome = Outcome.INVALID_REQUEST


class InvalidRequest(GatewayError):
    code = INVALID_REQUEST
    http_status = 400
    outcome = Outcome.INVALID_REQUEST


class MethodNotFound(GatewayError):
    code = METHOD_NOT_FOUND
    http_status = 404

    outcome = Outcome.INVALID_REQUEST

    def __init__(self, method: str) -> None:
        super().__init__(f"Method not found: {echo(method)}")


class InvalidParams(GatewayError):
    code = INVALID_PARAMS
    http_status = 400
    outcome = Outcome.INVALID_REQUEST


class UnknownTool(InvalidParams):
    """A tool that is not in the caller's catalogue: absent and forbidden look the same."""

    outcome = Outcome.DENIED

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown tool: {echo(name)}")


class UnknownPrompt(InvalidParams):
    """A prompt that is not in the caller's catalogue: absent and forbidden look the same."""

    outcome = Outcome.DENIED

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown prompt: {echo(name)}")


class UnknownResource(InvalidParams):
    """A resource the caller may not read, or that does not exist (the gateway could not resolve it,
    or its server said so): one answer for all, -32602 as in the 2026-07-28 specification."""

    outcome = Outcome.DENIED

    def __init__(self, uri: str) -> None:
        super().__init__(f"Unknown resource: {echo(uri)}")


class UpstreamUnavailable(GatewayError):
    """The server that owns the tool is down or restarting: nothing was sent, so a retry is safe."""

    code = UPSTREAM_UNAVAILABLE
    outcome = Outcome.UPSTREAM_UNAVAILABLE

    def __init__(self, server: str, detail: str) -> None:
        super().__init__(
            f"server {server!r} is unavailable ({detail}); the gateway is reconnecting, try again shortly",
            {"server": server, "retryable": True},
        )


class UpstreamFailed(GatewayError):
    """The server failed during the call (broken connection, malformed answer): it may have acted on it."""

    code = UPSTREAM_UNAVAILABLE
    outcome = Outcome.UPSTREAM_ERROR

    def __init__(self, server: str, detail: str) -> None:
        super().__init__(
            f"server {server!r} failed during the call: {detail}", {"server": server, "retryable": False}
        )


class UpstreamRpcError(GatewayError):
    """A JSON-RPC error the upstream returned; relayed to the client as it is."""

    outcome = Outcome.UPSTREAM_ERROR

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "upstream error")), error.get("data"))
        code = error.get("code")
        self.code = code if isinstance(code, int) else INTERNAL_ERROR


class UpstreamTimeout(GatewayError):
    code = REQUEST_TIMEOUT
    outcome = Outcome.TIMEOUT


class RateLimited(GatewayError):
    code = RATE_LIMITED
    outcome = Outcome.RATE_LIMITED

    def __init__(self, message: str, retry_after: float, blocked_by: str | None = None) -> None:
        super().__init__(message, {"retryAfterSeconds": round(retry_after, 3)})
        self.retry_after = retry_after
        self.blocked_by = blocked_by


class HttpProblem(Exception):
    """A request refused before JSON-RPC applies (auth, size, method, session): plain HTTP + JSON body."""

    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


def jsonrpc_error(exc: BaseException) -> dict[str, Any]:
    """The JSON-RPC ``error`` object for any exception; internals never reach the wire."""
    if isinstance(exc, GatewayError):
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            error["data"] = exc.data
        return error
    return {"code": INTERNAL_ERROR, "message": "Internal error in the gateway; see its log"}
