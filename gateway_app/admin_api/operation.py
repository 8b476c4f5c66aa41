"""One admin API operation: its route, who may call it, what it takes and what it records.

An `Operation` is the single description of an endpoint: the Starlette route is made from it
(`Operation.route`) and so is its OpenAPI entry (`gateway_app.admin_api.openapi`). Its wrapper does
what every endpoint needs and none repeats: it identifies the caller (an admin token; for
``access="key"`` a virtual key), refuses a read-only token on a change (403), turns any error into
the one JSON shape (`errors.problem_response`), and writes an ``admin_actions`` row for every change,
whether it succeeded, was refused or failed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway_app.admin_actions import ActionOutcome, AdminActions
from gateway_app.admin_api.errors import (
    ADMIN_REALM,
    AdminApiError,
    BadRequest,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    as_admin_error,
    problem_response,
)
from gateway_app.admin_guesses import TooManyWrongTokens
from gateway_app.health import NotAnAdminToken, admin_identity
from mcp_gateway.runtime import GatewayRuntime
from policies.admin import AdminIdentity, AdminRole
from policies.bounds import clip

if TYPE_CHECKING:
    from gateway_app.reload import Reloader
    from llm_proxy.runtime import LlmRuntime

logger = logging.getLogger("gateway_app.admin_api")

Access = Literal["read", "write", "key"]
"""``read``: either admin role; ``write``: role admin only; ``key``: a virtual key (self-service)."""
MAX_BODY_BYTES = 64 * 1024
"""Admin request bodies are small JSON objects (a key's settings)."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Param:
    """A query (or path) parameter, for the OpenAPI document; handlers read them through `Call`."""

    name: str
    schema: Mapping[str, Any]
    description: str
    where: Literal["query", "path"] = "query"
    required: bool = False


@dataclass
class Reply:
    body: Any
    status: int = 200

    def response(self) -> Response:
        # A final newline: one answer per line on a terminal, or when curl runs twice.
        body = orjson.dumps(self.body) + b"\n"
        return Response(body, status_code=self.status, media_type="application/json")


@dataclass
class Call:
    """One request to an operation: who made it, the gateway's parts, and what to record."""

    request: Request
    who: AdminIdentity | None
    runtime: GatewayRuntime
    outcome: ActionOutcome = "ok"
    """What the ``admin_actions`` row says, when the handler returns normally."""
    detail: dict[str, Any] | None = None
    """What changed, for the ``admin_actions`` row (never a secret)."""
    target: str | None = None
    """What the change is done to, when no path parameter names it (a key being created)."""

    @property
    def llm(self) -> LlmRuntime | None:
        return getattr(self.request.state, "llm", None)

    @property
    def reloader(self) -> Reloader | None:
        return getattr(self.request.state, "reloader", None)

    @property
    def actions(self) -> AdminActions:
        found: AdminActions | None = getattr(self.request.state, "admin_actions", None)
        return found if found is not None else AdminActions(self.runtime.engine)

    def now(self) -> datetime:
        """The gateway's clock (tests inject one)."""
        return datetime.fromtimestamp(self.runtime.state.clock(), UTC)

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str) -> str | None:
        values = self.request.query_params.getlist(name)
        if len(values) > 1:
            raise BadRequest(f"query parameter {name!r} is given {len(values)} times; give it once")
        return values[0] if values else None

    def query_all(self, name: str) -> list[str]:
        """A repeatable parameter; each value may also be a comma-separated list."""
        found = []
        for value in self.request.query_params.getlist(name):
            found += [part.strip() for part in value.split(",") if part.strip()]
        return found

    def choice(self, name: str, choices: Mapping[str, T], default: str) -> T:
        value = self.query(name) or default
        if value not in choices:
            raise BadRequest(f"{name} is one of {', '.join(choices)}, not {clip(value, 64)!r}")
        return choices[value]

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.query(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise BadRequest(f"{name} must be a whole number, not {clip(text, 64)!r}") from None
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}, not {value}")
        return value

    def flag(self, name: str) -> bool:
        text = self.query(name)
        if text is None:
            return False
        if text.lower() in ("", "1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise BadRequest(f"{name} is true or false, not {clip(text, 64)!r}")

    async def json_object(self, *, optional: bool = False) -> dict[str, Any]:
        """The request body: one JSON object (an empty body is ``{}`` when ``optional``)."""
        chunks, size = [], 0
        async for chunk in self.request.stream():  # read no further than the limit
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            if optional:
                return {}
            raise BadRequest("send a JSON object as the request body")
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body is not valid JSON ({clip(str(exc), 200)})") from None
        if not isinstance(value, dict):
            raise BadRequest("the body must be a JSON object")
        return value

    async def db(self, work: Callable[[], T]) -> T:
        """Blocking database work, off the event loop."""
        return await asyncio.to_thread(work)


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    access: Access = "read"
    action: str | None = None
    """The ``admin_actions`` name of a change (``key.create``); None for a read."""
    params: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None
    """The request body's JSON schema (None: no body)."""
    body_required: bool = True
    responses: Mapping[int, str] = field(default_factory=dict)
    """Statuses besides the refusals every operation may answer, and what each means."""
    description: str = ""

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{(\w+)", self.path)

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[{}]", "", self.path).replace("/admin/", "").replace("/", "_").replace("-", "_")
        return f"{self.method.lower()}_{words.strip('_')}"

    def route(self) -> Route:
        return Route(self.path, self._endpoint, methods=[self.method], name=self.operation_id)

    async def _endpoint(self, request: Request) -> Response:
        runtime: GatewayRuntime | None = getattr(request.state, "runtime", None)
        if runtime is None:
            return JSONResponse({"error": "starting", "message": "the gateway is starting"}, status_code=503)
        call: Call | None = None
        try:
            who = None if self.access == "key" else identify(request, runtime)
            call = Call(request, who, runtime)
            if self.access == "write":
                assert who is not None
                if who.role != AdminRole.ADMIN:
                    raise Forbidden(f"admin token {who.token_id!r} has the read-only role {who.role.value!r}")
            reply = await self.handler(call)
        except Exception as exc:
            error = as_admin_error(exc)
            if call is not None:
                outcome: ActionOutcome = "failed" if error.status >= 500 else "refused"
                detail = {**(call.detail or {}), "error": error.code, "message": clip(error.message, 500)}
                await self._record(call, outcome, detail)
            return problem_response(error)
        await self._record(call, call.outcome, call.detail)
        return reply.response()

    async def _record(self, call: Call, outcome: ActionOutcome, detail: dict[str, Any] | None) -> None:
        if self.action is None or call.who is None:
            return
        target = next((call.path(name) for name in self.path_params), call.target)
        await call.actions.record(call.who, "api", self.action, target, outcome, detail)


def identify(request: Request, runtime: GatewayRuntime) -> AdminIdentity:
    """The admin behind the request, or `Unauthorized` (no token, a virtual key, an unknown token)."""
    try:
        who = admin_identity(request, runtime.state.current)
    except TooManyWrongTokens as exc:
        raise TooManyRequests(
            f"Too many wrong admin tokens from this address: retry in {exc.retry_after} s",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    except NotAnAdminToken:
        raise Unauthorized(
            "Not an admin token: send 'Authorization: Bearer <admin token>' (a virtual key never opens "
            "the admin API)",
            headers={"WWW-Authenticate": ADMIN_REALM},
        ) from None
    if who is None:
        raise Unauthorized(
            "Missing admin token: send 'Authorization: Bearer <admin token>'",
            headers={"WWW-Authenticate": ADMIN_REALM},
        )
    return who


__all__ = ["AdminApiError", "Call", "Operation", "Param", "Reply"]
