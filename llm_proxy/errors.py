"""Model-proxy errors and the one function that turns any of them into a wire response.

Handlers raise a `ProxyError`; only `error_response` decides what a client sees:
the Anthropic shape (``{"type":"error","error":{"type":...,"message":...}}``) on
Anthropic routes, the OpenAI shape (``{"error":{"message":...,"type":...,"code":...}}``)
on OpenAI routes. Anything that is not a `ProxyError` becomes a generic 500:
internals (and anything they might carry, such as a provider key) never reach a client.
Each error also names the `Outcome` its ledger row records (``outcome``).
"""

from __future__ import annotations

import math
from typing import Literal

import orjson

from gateway_common.sse import encode_event
from policies.outcomes import Outcome

Flavor = Literal["anthropic", "openai"]
Headers = list[tuple[bytes, bytes]]


class ProxyError(Exception):
    status: int = 500
    error_type: str = "api_error"
    code: str = "internal_error"
    """Short machine code for the OpenAI shape."""
    outcome: Outcome = Outcome.GATEWAY_ERROR
    """The ledger row's status when this error ends a request (the class default, or set per error)."""

    def __init__(
        self, message: str, *, blocked_by: str | None = None, outcome: Outcome | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.blocked_by = blocked_by
        """Which limit or budget refused the request, for the ledger."""
        if outcome is not None:
            self.outcome = outcome

    def headers(self) -> Headers:
        return []


class InvalidRequest(ProxyError):
    status, error_type, code = 400, "invalid_request_error", "invalid_request"
    outcome = Outcome.INVALID_REQUEST


class AuthenticationFailed(ProxyError):
    status, error_type, code = 401, "authentication_error", "invalid_api_key"
    outcome = Outcome.DENIED


class BillingBlocked(ProxyError):
    status, error_type, code = 402, "billing_error", "budget_exceeded"
    outcome = Outcome.BUDGET_EXCEEDED


class PermissionDenied(ProxyError):
    status, error_type, code = 403, "permission_error", "model_not_allowed"
    outcome = Outcome.DENIED


class NotFound(ProxyError):
    status, error_type, code = 404, "not_found_error", "model_not_found"
    outcome = Outcome.DENIED


class RequestTooLarge(ProxyError):
    status, error_type, code = 413, "request_too_large", "request_too_large"
    outcome = Outcome.INVALID_REQUEST


class RateLimited(ProxyError):
    """A 429: a gateway rate limit, a budget held by requests in flight, or providers that all said 429."""

    status, error_type, code = 429, "rate_limit_error", "rate_limit_exceeded"
    outcome = Outcome.RATE_LIMITED

    def __init__(
        self,
        message: str,
        retry_after: float,
        *,
        blocked_by: str | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        super().__init__(message, blocked_by=blocked_by, outcome=outcome)
        self.retry_after = retry_after

    def headers(self) -> Headers:
        return [(b"retry-after", str(max(1, math.ceil(self.retry_after))).encode())]


class GatewayUnavailable(RateLimited):
    """A 503 with ``retry-after``: the gateway cannot decide now (its shared counter store is down and
    the policy refuses what it cannot count); nothing was sent to a provider, so a retry is safe."""

    status, error_type, code = 503, "api_error", "service_unavailable"


class UpstreamFailed(ProxyError):
    status, error_type, code = 502, "api_error", "upstream_error"
    outcome = Outcome.UPSTREAM_ERROR


class Overloaded(ProxyError):
    status, error_type, code = 529, "overloaded_error", "overloaded"
    outcome = Outcome.UPSTREAM_ERROR


def error_response(exc: BaseException, flavor: Flavor) -> tuple[int, Headers, bytes]:
    """Status, headers and body for ``exc`` in the shape the route's clients understand."""
    if isinstance(exc, ProxyError):
        status, error_type, code, message = exc.status, exc.error_type, exc.code, exc.message
        headers = exc.headers()
    else:
        status, error_type, code = 500, "api_error", "internal_error"
        message = "Internal error in the gateway; see its log"
        headers = []
    if flavor == "openai":
        payload: dict[str, object] = {"error": {"message": message, "type": error_type, "code": code}}
    else:
        payload = {"type": "error", "error": {"type": error_type, "message": message}}
    body = orjson.dumps(payload)
    return (
        status,
        [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        body,
    )


def stream_error_event(exc: BaseException, flavor: Flavor) -> bytes:
    """The same error as an SSE event, for a stream that already started."""
    _, _, body = error_response(exc, flavor)
    return encode_event(body, None if flavor == "openai" else "error")
