"""The admin API's errors and the one function that puts any of them on the wire.

Every refusal is JSON ``{"error": code, "message": text}`` (plus fields some errors add, such as a
refused reload's record) with the status that says who must act: 400 a request the API cannot read,
401 no admin token (or a virtual key's secret), 403 a read-only token on a change, 404 an unknown
id, 409 a change that conflicts with the current state, 422 a readable request the gateway refuses
(the message says why), 503 a shared counter store that cannot be reached (live spend and limits
cannot be read; retry). The domain's own exceptions (`KeyNotFound`, `KeyRequestError`,
`PeriodError`, `InvalidCursor`, `CounterStoreUnavailable`) are mapped here, so no handler
translates them itself.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.responses import JSONResponse

from gateway_app.keys_admin import KeyNotFound, KeyRequestError
from gateway_app.queries import InvalidCursor, PeriodError
from gateway_common.counters.guarded import CounterStoreUnavailable
from policies.bounds import MAX_ERROR_CHARS, clip

logger = logging.getLogger("gateway_app.admin_api")

ADMIN_REALM = 'Bearer realm="mcp-gateway-admin"'
KEY_REALM = 'Bearer realm="mcp-gateway"'


class AdminApiError(Exception):
    """Base of the package's errors: an HTTP status, a stable code and a message for the caller."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class BadRequest(AdminApiError):
    status, code = 400, "bad_request"


class Unauthorized(AdminApiError):
    status, code = 401, "unauthorized"


class TooManyRequests(AdminApiError):
    status, code = 429, "too_many_wrong_tokens"


class Forbidden(AdminApiError):
    status, code = 403, "forbidden"


class NotFound(AdminApiError):
    status, code = 404, "not_found"


class Conflict(AdminApiError):
    status, code = 409, "conflict"


class Refused(AdminApiError):
    """A request the API understood and the gateway refuses (a key change its rules forbid, a broken
    policy file): the message says why and what to do instead."""

    status, code = 422, "refused"


class Failed(AdminApiError):
    status, code = 500, "failed"


class Unavailable(AdminApiError):
    """Something the answer needs cannot be reached now (the shared counter store): retry."""

    status, code = 503, "unavailable"


def as_admin_error(exc: Exception) -> AdminApiError:
    """The admin API's view of any exception a handler let through."""
    if isinstance(exc, AdminApiError):
        return exc
    if isinstance(exc, KeyNotFound):
        return NotFound(str(exc))
    if isinstance(exc, KeyRequestError):
        return Refused(str(exc))
    if isinstance(exc, PeriodError | InvalidCursor):
        return BadRequest(str(exc))
    if isinstance(exc, CounterStoreUnavailable):
        seconds = max(1, math.ceil(exc.retry_after))
        return Unavailable(
            f"The gateway cannot reach its counter store, so live {exc.concern.replace('_', ' ')} "
            f"cannot be read now; retry in {seconds} s",
            headers={"retry-after": str(seconds)},
        )
    logger.error("admin API request failed", exc_info=exc)
    return Failed(f"the gateway could not complete the request ({type(exc).__name__}); see its log")


def problem_response(exc: Exception) -> JSONResponse:
    """The one mapping of an error to the wire for the admin API and /v1/quota."""
    error = as_admin_error(exc)
    body: dict[str, Any] = {"error": error.code, "message": clip(error.message, MAX_ERROR_CHARS)}
    body.update(error.extra)
    return JSONResponse(body, status_code=error.status, headers=error.headers)
