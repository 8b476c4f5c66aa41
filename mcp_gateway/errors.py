"""Gateway errors and the one place they are turned into wire messages.

Domain code raises these; only the /mcp endpoint calls `jsonrpc_error` (and
`http_status`) to decide what a client sees. Messages are written for the
person reading them in Claude Code: they say what happened and, where it helps,
what to do.
"""

from __future__ import annotations

from typing import Any

from mcp_types.jsonrpc import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_TIMEOUT,
    UNSUPPORTED_PROTOCOL_VERSION,
)

# Implementation-defined codes (-32000..-32019 is ours; -32000/-32001/-32002 are taken or retired).
UPSTREAM_UNAVAILABLE = -32010
RATE_LIMITED = -32011

JsonRpcId = str | int | None


class GatewayError(Exception):
    """Base class: a JSON-RPC code, a message for the client and optional data."""

    code: int = INTERNAL_ERROR
    http_status: int = 200

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ParseError(GatewayError):
    code = PARSE_ERROR
    http_status = 400


class InvalidRequest(GatewayError):
    code = INVALID_REQUEST
    http_status = 400


class MethodNotFound(GatewayError):
    code = METHOD_NOT_FOUND
    http_status = 404

    def __init__(self, method: str) -> None:
        super().__init__(f"Method not found: {method}")


class InvalidParams(GatewayError):
    code = INVALID_PARAMS
    http_status = 400


class UnknownTool(InvalidParams):
    """A tool that is not in the caller's catalogue: absent and forbidden look the same."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown tool: {name}")


class HeaderMismatch(GatewayError):
    code = HEADER_MISMATCH
    http_status = 400


class UnsupportedProtocolVersion(GatewayError):
    code = UNSUPPORTED_PROTOCOL_VERSION
    http_status = 400


class UpstreamUnavailable(GatewayError):
    """The server that owns the tool is down, restarting or failed mid-call."""

    code = UPSTREAM_UNAVAILABLE


class UpstreamTimeout(GatewayError):
    code = REQUEST_TIMEOUT


class RateLimited(GatewayError):
    code = RATE_LIMITED

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, {"retryAfterSeconds": round(retry_after, 3)})
        self.retry_after = retry_after


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


def http_status(exc: BaseException) -> int:
    return exc.http_status if isinstance(exc, GatewayError) else 200
