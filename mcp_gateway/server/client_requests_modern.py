"""A 2025 upstream's requests to a 2026-07-28 caller: ``input_required`` results and their retries.

A 2026 client cannot be sent a request; it is answered ``input_required`` and retries the
call with ``inputResponses`` and the ``requestState`` it was given. A 2025 upstream, though,
asks mid-call and waits. So for a 2026 caller (one that declared a capability the gateway
relays) of a 2025 upstream, the upstream call runs as its own task (an `Exchange`): when the
upstream asks, the caller gets ``input_required`` with the questions and a gateway-issued
opaque token as ``requestState``, while the upstream call stays alive, parked. The retry that
carries the token (bound to the same key, method and name) hands the answers to the waiting
upstream requests and waits for what comes next: the final reply, or more questions.

Bounded: a parked exchange lives ``mcp.client_request_timeout_seconds``; then its questions
are answered with an error and the upstream call is cancelled. A key holds at most
`MAX_PER_KEY` parked exchanges, the process `MAX_EXCHANGES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp_gateway.errors import GatewayError, InvalidParams
from mcp_gateway.server.client_requests import (
    CLIENT_TIMEOUT,
    MAX_INPUT_REQUESTS,
    CallerAsker,
    asker_for,
    check_resumable,
    complete_input_required,
    is_input_required,
)
from mcp_gateway.server.handshake import ClientCapability
from mcp_gateway.upstream.base import JsonObject, NotificationHandler, UpstreamConnection
from policies.outcomes import Outcome

if TYPE_CHECKING:
    from mcp_gateway.server.context import RequestContext

TOKEN_PREFIX = "mcpgw-ir:"  # noqa: S105 (a marker, not a secret)
"""Marks a ``requestState`` the gateway issued (any other passes to the upstream untouched)."""
MAX_PER_KEY = 32
MAX_EXCHANGES = 10_000
BUSY = -32012


class TooManyExchanges(GatewayError):
    code = BUSY
    outcome = Outcome.RATE_LIMITED


@dataclass
class _Question:
    request: JsonObject
    answer: asyncio.Future[JsonObject]
    shown: bool = False


@dataclass(eq=False)
class Exchange:
    """One upstream call of a 2026 caller that may span several of its requests."""

    registry: ExchangeRegistry
    key_id: str
    method: str
    target: str
    timeout: float
    token: str = field(default_factory=lambda: TOKEN_PREFIX + secrets.token_urlsafe(18))
    task: asyncio.Task[JsonObject] | None = None
    questions: dict[str, _Question] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    attached: bool = True
    """A downstream request is waiting on it now (False: parked, waiting for the retry)."""
    expiry: asyncio.TimerHandle | None = None
    relay_to: NotificationHandler | None = None
    """Where the call's progress and log messages go now: the attached request's (none while parked)."""
    _next_key: int = 0

    async def relay(self, message: JsonObject) -> None:
        target = self.relay_to
        if target is not None:
            await target(message)

    def ask(self, request: JsonObject) -> asyncio.Future[JsonObject] | JsonObject:
        """Add a question; its answer's future, or an error at once."""
        if len(self.questions) >= MAX_INPUT_REQUESTS:
            return {"error": {"code": -32603, "message": "too many client requests at once"}}
        self._next_key += 1
        key = f"gw{self._next_key}"
        outgoing = {"method": request["method"]}
        if isinstance(request.get("params"), dict):
            outgoing["params"] = request["params"]
        question = _Question(outgoing, asyncio.get_running_loop().create_future())
        self.questions[key] = question
        question.answer.add_done_callback(lambda _: self.questions.pop(key, None))
        self.changed.set()
        return question.answer

    def answer(self, responses: Any) -> int:
        """Hand the retry's answers to the questions they answer; how many were answered."""
        answered = 0
        if isinstance(responses, dict):
            for key, response in responses.items():
                question = self.questions.get(key)
                if question is not None and not question.answer.done() and isinstance(response, dict):
                    question.answer.set_result({"result": response})
                    answered += 1
        return answered

    async def next(self, ctx: RequestContext, relay: NotificationHandler | None) -> JsonObject:
        """Wait for the upstream's final reply or its next questions (as an ``input_required`` reply)."""
        task = self.task
        assert task is not None
        self.relay_to = relay
        try:
            while True:
                if task.done():
                    self.registry.drop(self)
                    return task.result()
                waiting = {k: q for k, q in self.questions.items() if not q.answer.done()}
                if waiting:
                    ctx.client_requests += sum(1 for q in waiting.values() if not q.shown)
                    for question in waiting.values():
                        question.shown = True
                    self.relay_to = None
                    self.registry.park(self)
                    result: JsonObject = {
                        "resultType": "input_required",
                        "inputRequests": {k: q.request for k, q in waiting.items()},
                        "requestState": self.token,
                    }
                    return {"result": result}
                self.changed.clear()
                changed = asyncio.ensure_future(self.changed.wait())
                try:
                    await asyncio.wait({task, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
        except asyncio.CancelledError:
            self.end("the client went away")  # the caller left before an answer: so does the call
            raise

    def end(self, why: str) -> None:
        """Answer every open question with an error and cancel the upstream call."""
        for question in list(self.questions.values()):
            if not question.answer.done():
                question.answer.set_result({"error": {"code": CLIENT_TIMEOUT, "message": why}})
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.registry.drop(self)


class ExchangeAsker(CallerAsker):
    """The caller of an exchange, as its upstream sees it."""

    def __init__(self, exchange: Exchange, ctx: RequestContext) -> None:
        super().__init__(ctx)
        self.exchange = exchange

    async def ask(self, request: JsonObject) -> JsonObject:
        error = self.refused(request)
        if error is not None:
            return {"error": error}
        pending = self.exchange.ask(request)
        if isinstance(pending, dict):
            return pending
        return await pending  # bounded: an exchange that expires answers its questions


class ExchangeRegistry:
    """The exchanges of this process, parked ones by token."""

    def __init__(self) -> None:
        self._parked: dict[str, Exchange] = {}
        self._live: set[Exchange] = set()
        self._per_key: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._live)

    def start(
        self,
        ctx: RequestContext,
        method: str,
        target: str,
        call: Callable[[ExchangeAsker], Coroutine[Any, Any, JsonObject]],
    ) -> Exchange:
        """Run ``call(asker)`` as a new exchange's task (``asker``: the exchange's, for the upstream)."""
        key_id = ctx.principal.key_id
        if len(self._live) >= MAX_EXCHANGES or self._per_key.get(key_id, 0) >= MAX_PER_KEY:
            raise TooManyExchanges(
                "Too many calls are waiting for client input; answer or abandon some, then retry"
            )
        timeout = ctx.snapshot.policy.mcp.client_request_timeout_seconds
        exchange = Exchange(self, key_id, method, target, timeout)
        self._live.add(exchange)
        self._per_key[key_id] = self._per_key.get(key_id, 0) + 1
        task = asyncio.ensure_future(call(ExchangeAsker(exchange, ctx)))
        task.add_done_callback(_retrieve)
        exchange.task = task
        return exchange

    def resume(self, ctx: RequestContext, method: str, target: str, token: str) -> Exchange:
        """The parked exchange a retry names; a clear error when it is unknown, expired or another's."""
        exchange = self._parked.get(token)
        if (
            exchange is None
            or exchange.key_id != ctx.principal.key_id
            or exchange.method != method
            or exchange.target != target
        ):
            raise InvalidParams(
                "requestState is unknown or expired (or belongs to another request): "
                "call again without inputResponses and requestState"
            )
        del self._parked[token]
        if exchange.expiry is not None:
            exchange.expiry.cancel()
            exchange.expiry = None
        exchange.attached = True
        return exchange

    def park(self, exchange: Exchange) -> None:
        exchange.attached = False
        self._parked[exchange.token] = exchange
        if exchange.expiry is None:
            loop = asyncio.get_running_loop()
            why = f"the client did not retry with the answers within {exchange.timeout:g} s"
            exchange.expiry = loop.call_later(exchange.timeout, exchange.end, why)

    def drop(self, exchange: Exchange) -> None:
        if exchange in self._live:
            self._live.discard(exchange)
            left = self._per_key.get(exchange.key_id, 1) - 1
            if left:
                self._per_key[exchange.key_id] = left
            else:
                self._per_key.pop(exchange.key_id, None)
        self._parked.pop(exchange.token, None)
        if exchange.expiry is not None:
            exchange.expiry.cancel()
            exchange.expiry = None

    def close(self) -> None:
        for exchange in list(self._live):
            with contextlib.suppress(Exception):
                exchange.end("the gateway is stopping")


def _retrieve(task: asyncio.Task[JsonObject]) -> None:
    """An exchange whose caller never came back still had its outcome looked at."""
    if not task.cancelled():
        task.exception()


RELAYED = ClientCapability.ELICITATION | ClientCapability.SAMPLING | ClientCapability.ROOTS


async def request_for_caller(
    ctx: RequestContext,
    conn: UpstreamConnection,
    method: str,
    params: JsonObject,
    target: str,
    *,
    timeout: float | None,
    on_notification: NotificationHandler | None = None,
    headers: dict[str, str] | None = None,
    progress: bool = True,
) -> JsonObject:
    """Send one caller's request upstream; whatever the upstream asks the caller on the way is put
    to it in its own era. Returns the upstream's reply (for a 2026 caller of a 2025 upstream,
    possibly an ``input_required`` one the gateway made)."""
    if ctx.modern and not conn.modern and ctx.capabilities & RELAYED:
        registry: ExchangeRegistry = ctx.runtime.exchanges
        state = params.get("requestState")
        if isinstance(state, str) and state.startswith(TOKEN_PREFIX):
            check_resumable(params)
            exchange = registry.resume(ctx, method, target, state)
            exchange.answer(params.get("inputResponses"))
        else:

            async def call(asker: ExchangeAsker) -> JsonObject:
                relay = asker.exchange.relay if on_notification is not None else None
                return await conn.request(
                    method,
                    params,
                    timeout=timeout,
                    on_notification=relay,
                    headers=headers,
                    client=asker,
                    progress=progress,
                )

            exchange = registry.start(ctx, method, target, call)
        return await exchange.next(ctx, on_notification)
    asker = asker_for(ctx)
    reply = await conn.request(
        method,
        params,
        timeout=timeout,
        on_notification=on_notification,
        headers=headers,
        client=asker,
        progress=progress,
    )
    if ctx.modern and is_input_required(reply):
        requests = reply["result"].get("inputRequests")
        ctx.client_requests += len(requests) if isinstance(requests, dict) else 0  # passed through
    elif is_input_required(reply):

        async def retry(again: JsonObject) -> JsonObject:
            return await conn.request(
                method,
                again,
                timeout=timeout,
                on_notification=on_notification,
                headers=headers,
                client=asker,
                progress=progress,
            )

        reply = await complete_input_required(ctx, asker, params, reply, retry)
    return reply
