"""Requests from an upstream to the client (elicitation, sampling, roots), across the two eras.

An upstream may turn to its client while a tools/call, prompts/get or resources/read is in
flight. The gateway is that client, so it puts the request to the one downstream caller whose
call it belongs to, and only if that caller declared the capability; otherwise the upstream
gets a JSON-RPC error at once, never a hang. Four combinations:

- 2025 upstream, 2025 caller: the request goes out on the caller's POST response stream with
  a gateway-assigned id (`SessionAsker`); the caller's answer comes back as a POST on its
  session and is routed to the waiting upstream request (`Session.answer`).
- 2025 upstream, 2026 caller: the request becomes an ``input_required`` result and the caller's
  retry carries the answer (`client_requests_modern`).
- 2026 upstream, 2026 caller: the upstream's ``input_required`` result passes through as it is
  (the upstream's own ``requestState``); the envelope declares the caller's own capabilities.
- 2026 upstream, 2025 caller: each input request becomes a real request to the caller and the
  gateway retries the upstream with the answers (`complete_input_required`).

Every wait is bounded by ``mcp.client_request_timeout_seconds``; the audit row of the call
counts the requests put to the client (``client_requests``), never their content.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp_gateway.errors import GatewayError, InvalidParams
from mcp_gateway.server.handshake import ClientCapability
from mcp_gateway.upstream.base import ClientAsker, JsonObject
from policies.bounds import MAX_ERROR_CHARS, MAX_NAME_CHARS, clip, echo
from policies.outcomes import Outcome

if TYPE_CHECKING:
    from mcp_gateway.server.context import Emit, RequestContext
    from mcp_gateway.server.sessions import Session

METHOD_NOT_FOUND = -32601
MISSING_CAPABILITY = -32021
"""The 2026-07-28 code for a client capability the request needs and the client did not declare."""
CLIENT_TIMEOUT = -32001
MAX_INPUT_REQUESTS = 16
"""Most input requests one ``input_required`` result may carry (more is refused)."""
MAX_ROUNDS = 10
"""Most ``input_required`` rounds the gateway drives for a 2025 caller (the SDK's own default)."""
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_IDS = itertools.count(1)
_ID_PREFIX = f"gw-{secrets.token_hex(4)}-"
_NEEDS = {
    "elicitation/create": (ClientCapability.ELICITATION, "elicitation"),
    "sampling/createMessage": (ClientCapability.SAMPLING, "sampling"),
    "roots/list": (ClientCapability.ROOTS, "roots"),
}


class ClientCannotAnswer(GatewayError):
    """An upstream's input request that the caller cannot answer (it lacks the capability)."""

    code = MISSING_CAPABILITY
    outcome = Outcome.UPSTREAM_ERROR


def capabilities_meta(flags: ClientCapability) -> JsonObject:
    """The capabilities a caller declared, rebuilt from its flags (bounded, nothing else of its payload)."""
    declared: JsonObject = {}
    if flags & ClientCapability.ROOTS:
        declared["roots"] = {"listChanged": True} if flags & ClientCapability.ROOTS_LIST_CHANGED else {}
    if flags & ClientCapability.SAMPLING:
        sampling: JsonObject = {}
        if flags & ClientCapability.SAMPLING_CONTEXT:
            sampling["context"] = {}
        if flags & ClientCapability.SAMPLING_TOOLS:
            sampling["tools"] = {}
        declared["sampling"] = sampling
    if flags & ClientCapability.ELICITATION:
        elicitation: JsonObject = {}
        if flags & ClientCapability.ELICITATION_FORM:
            elicitation["form"] = {}
        if flags & ClientCapability.ELICITATION_URL:
            elicitation["url"] = {}
        declared["elicitation"] = elicitation
    return declared


def refusal(request: JsonObject, flags: ClientCapability) -> JsonObject | None:
    """The error for a request this caller cannot be asked (None: it can)."""
    method = request.get("method")
    need = _NEEDS.get(method) if isinstance(method, str) else None
    if need is None:
        name = clip(str(method), MAX_NAME_CHARS)
        return {"code": METHOD_NOT_FOUND, "message": f"the gateway does not relay {name} to clients"}
    flag, name = need
    if flag is ClientCapability.ELICITATION:
        params = request.get("params")
        url_mode = isinstance(params, dict) and params.get("mode") == "url"
        flag = ClientCapability.ELICITATION_URL if url_mode else ClientCapability.ELICITATION_FORM
        name = "elicitation.url" if url_mode else "elicitation (form)"
    if not flags & flag:
        return {
            "code": MISSING_CAPABILITY,
            "message": f"the client of this call did not declare the {name} capability",
        }
    return None


def log_wanted(level: str | None, message: JsonObject) -> bool:
    """A log message at or above ``level`` (None: the caller asked for none)."""
    if level is None:
        return False
    params = message.get("params")
    said = params.get("level") if isinstance(params, dict) else None
    rank = LOG_LEVELS.index(said) if said in LOG_LEVELS else len(LOG_LEVELS) - 1
    return rank >= LOG_LEVELS.index(level) if level in LOG_LEVELS else True


def bounded_error(error: Any) -> JsonObject:
    """A client's JSON-RPC error for the upstream: its code and clipped message only."""
    if not isinstance(error, dict):
        return {"code": -32603, "message": "the client answered with an invalid error"}
    code = error.get("code")
    message = error.get("message")
    return {
        "code": code if type(code) is int else -32603,
        "message": clip(message, MAX_ERROR_CHARS) if isinstance(message, str) else "error",
    }


class CallerAsker(ClientAsker):
    """An asker for the caller of one downstream request: what it declared (capabilities, log
    level) decides what may be put to it and what a 2026 upstream is told on its behalf."""

    def __init__(self, ctx: RequestContext) -> None:
        self.flags = ctx.capabilities
        self.capabilities = capabilities_meta(ctx.capabilities)
        self.log_level = ctx.log_level

    def refused(self, request: JsonObject) -> JsonObject | None:
        """The error member for a request the caller did not declare it can answer, else None."""
        return refusal(request, self.flags)


class SessionAsker(CallerAsker):
    """A 2025-11-25 caller: asked on its POST's response stream, answering with a POST."""

    def __init__(self, ctx: RequestContext, session: Session, emit: Emit | None, timeout: float) -> None:
        super().__init__(ctx)
        self.ctx = ctx
        self.session = session
        self.emit = emit
        self.timeout = timeout

    async def ask(self, request: JsonObject) -> JsonObject:
        error = self.refused(request)
        if error is not None:
            return {"error": error}
        if self.emit is None:
            message = "the client's POST does not accept text/event-stream, so the gateway cannot ask it"
            return {"error": {"code": MISSING_CAPABILITY, "message": message}}
        gateway_id = f"{_ID_PREFIX}{next(_IDS)}"
        outgoing: JsonObject = {"jsonrpc": "2.0", "id": gateway_id, "method": request["method"]}
        if "params" in request:
            outgoing["params"] = request["params"]
        waiter = self.session.expect(gateway_id)
        self.ctx.client_requests += 1
        try:
            await self.emit(outgoing)
            async with asyncio.timeout(self.timeout):
                answer = await waiter
        except TimeoutError:
            message = f"the client did not answer {request['method']} within {self.timeout:g} s"
            return {"error": {"code": CLIENT_TIMEOUT, "message": message}}
        finally:
            self.session.forget(gateway_id)
        if "error" in answer:
            return {"error": bounded_error(answer["error"])}
        result = answer.get("result")
        return {"result": result if isinstance(result, dict) else {}}


class RefusingAsker(CallerAsker):
    """A caller that can be asked nothing (a 2026 caller on a 2026 upstream never is: its upstream
    says ``input_required`` instead; or one that declared no capability)."""

    async def ask(self, request: JsonObject) -> JsonObject:
        error = self.refused(request) or {
            "code": METHOD_NOT_FOUND,
            "message": "the gateway cannot put this request to the client of this call",
        }
        return {"error": error}


def asker_for(ctx: RequestContext) -> ClientAsker:
    """The asker of one downstream request (2026 callers on 2025 upstreams: see `client_requests_modern`)."""
    if ctx.session is not None:
        timeout = ctx.snapshot.policy.mcp.client_request_timeout_seconds
        return SessionAsker(ctx, ctx.session, ctx.emit, timeout)
    return RefusingAsker(ctx)


def is_input_required(reply: JsonObject) -> bool:
    result = reply.get("result")
    return isinstance(result, dict) and result.get("resultType") == "input_required"


async def complete_input_required(
    ctx: RequestContext,
    asker: ClientAsker,
    params: JsonObject,
    reply: JsonObject,
    retry: Callable[[JsonObject], Awaitable[JsonObject]],
) -> JsonObject:
    """(2026 upstream, 2025 caller) Put each input request of an ``input_required`` reply to the
    caller as a real request, retry the upstream with the answers, until a final reply."""
    rounds = 0
    while is_input_required(reply):
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise ClientCannotAnswer(f"the upstream still wanted input after {MAX_ROUNDS} rounds")
        result = reply["result"]
        requests = result.get("inputRequests") or {}
        if not isinstance(requests, dict) or len(requests) > MAX_INPUT_REQUESTS:
            raise ClientCannotAnswer(f"the upstream asked for more than {MAX_INPUT_REQUESTS} inputs at once")
        responses: JsonObject = {}
        for key, request in requests.items():
            if not isinstance(request, dict):
                raise ClientCannotAnswer(f"the upstream's input request {echo(key)} is not an object")
            answer = await asker.ask(request)
            if "error" in answer:
                error = answer["error"]
                method = clip(str(request.get("method")), MAX_NAME_CHARS)
                raise ClientCannotAnswer(f"{method} for this call failed: {error.get('message')}")
            responses[key] = answer["result"]
        params = dict(params)
        params["inputResponses"] = responses
        if isinstance(result.get("requestState"), str):
            params["requestState"] = result["requestState"]
        else:
            params.pop("requestState", None)
        reply = await retry(params)
    return reply


def check_resumable(params: JsonObject) -> None:
    """Refuse malformed ``inputResponses`` early (bounded)."""
    responses = params.get("inputResponses")
    if responses is not None and (not isinstance(responses, dict) or len(responses) > MAX_INPUT_REQUESTS):
        raise InvalidParams(f"inputResponses must be an object of at most {MAX_INPUT_REQUESTS} answers")
