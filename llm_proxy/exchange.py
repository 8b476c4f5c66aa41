"""One model request from arrival to ledger row: admit, forward with fallbacks, relay, settle, record.

Order of checks: key (401), body size and shape (413, 400), route (404), model
permission (403), price known (403 when unknown models are blocked), rate limits
(429), then the caller's budgets are reserved (402, or 429 while the rest of a
budget is held by requests in flight). Targets are then tried in order
(`forward`); a provider's own budget is reserved per target. The answer is
relayed (`relay`). Rate limits and the caller's budgets are admitted in one counter
store call (`policies.admission`). Whatever happens, `finish` releases the concurrency slot,
counts tokens, settles every reservation (again one store call) to the real cost (a stream cut before
its final usage: to the estimate, see `llm_proxy.usage`), dispatches alerts and
submits one ledger row, whose ``status`` is an `Outcome`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import Receive, Scope, Send

from gateway_common.asgi import ClientGone
from gateway_common.asgi import read_body as read_limited_body
from gateway_common.auth import bearer_token
from llm_proxy.dialects import Dialect, ParsedRequest
from llm_proxy.errors import (
    AuthenticationFailed,
    PermissionDenied,
    ProxyError,
    RateLimited,
    RequestTooLarge,
    error_response,
)
from llm_proxy.forward import Failure, Opened, all_failed, budget_error, try_target
from llm_proxy.ledger import ModelRequestRow
from llm_proxy.relay import relay_stream, relay_whole
from llm_proxy.runtime import LlmRuntime
from policies import Principal, admission
from policies.bounds import MAX_ERROR_CHARS, MAX_ID_CHARS, MAX_NAME_CHARS, clip, echo
from policies.budgeting import BudgetBlock, Reservation
from policies.outcomes import Outcome
from policies.pricing import ZERO_USAGE, Rates, Usage
from policies.ratelimit import RateDecision, RequestTicket
from policies.routing import Target
from policies.snapshot import PolicySnapshot

logger = logging.getLogger("llm_proxy")

WANTED_HEADERS = frozenset(
    {
        b"x-api-key",
        b"authorization",
        b"anthropic-version",
        b"anthropic-beta",
        b"content-length",
        b"x-claude-code-session-id",
        b"user-agent",
    }
)


def client_headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in WANTED_HEADERS:
            key = name.decode("latin-1")
            if key not in found:
                found[key] = value.decode("latin-1")
    return found


async def authenticate(rt: LlmRuntime, headers: dict[str, str]) -> tuple[Principal, PolicySnapshot]:
    """The caller, and the policy snapshot every decision of its request comes from."""
    secret = headers.get("x-api-key") or bearer_token(headers.get("authorization"))
    if not secret:
        raise AuthenticationFailed(
            "Missing virtual key: send it in the x-api-key header or as 'Authorization: Bearer <key>'"
        )
    principal, snapshot = await rt.state.authenticate(secret)
    if principal is None:
        # Expired (or rotated out) is said only to a holder of that very secret; the rest get one answer.
        raise AuthenticationFailed(
            snapshot.refusal(secret) or "Invalid virtual key (unknown, revoked or disabled)"
        )
    return principal, snapshot


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"Request body is larger than the gateway's limit of {limit} bytes")


async def read_body(receive: Receive, limit: int, content_length: str | None) -> bytes:
    """The request body within the proxy's limit; too large is a 413 in the API's own error shape."""
    return await read_limited_body(receive, limit, content_length, _too_large)


class Exchange:
    __slots__ = (
        "arrived",
        "attempts",
        "blocked_by",
        "client_gone",
        "dialect",
        "error",
        "error_type",
        "headers",
        "http_status",
        "parsed",
        "principal",
        "provider",
        "query",
        "rates",
        "relaying",
        "request_id",
        "reservations",
        "response_started",
        "route",
        "rt",
        "served_model",
        "snapshot",
        "started",
        "status",
        "ticket",
        "ttfb",
        "upstream_request_id",
        "usage",
        "usage_estimated",
    )

    def __init__(self, rt: LlmRuntime, dialect: Dialect, scope: Scope) -> None:
        self.rt = rt
        self.dialect = dialect
        self.started = time.perf_counter()
        self.arrived = rt.clock()
        self.request_id = rt.next_request_id()
        self.headers = client_headers(scope)
        self.query = scope["query_string"].decode("latin-1") if scope.get("query_string") else ""
        self.principal: Principal | None = None
        self.snapshot: PolicySnapshot | None = None
        self.parsed: ParsedRequest | None = None
        self.route: str | None = None
        self.provider: str | None = None
        self.served_model: str | None = None
        self.attempts = 0
        self.usage: Usage = ZERO_USAGE
        self.usage_estimated: bool | None = None
        """None: no answer to read usage from; False: the provider's own; True: estimated (cut stream)."""
        self.rates: Rates | None = None
        self.ttfb: float | None = None
        self.status = Outcome.OK
        self.http_status = 200
        self.error_type: str | None = None
        self.error: str | None = None
        self.blocked_by: str | None = None
        self.upstream_request_id: str | None = None
        self.ticket: RequestTicket | None = None
        self.reservations: list[Reservation] = []
        self.response_started = False
        self.relaying = False
        self.client_gone = False

    async def handle(self, receive: Receive, send: Send) -> None:
        try:
            self.principal, self.snapshot = await authenticate(self.rt, self.headers)
            body = await read_body(
                receive, self.rt.settings.max_body_bytes, self.headers.get("content-length")
            )
            self.parsed = self.dialect.parse(body, self.snapshot.policy.gateway.max_json_depth)
            await self._run(receive, send)
        except ClientGone:
            self.status, self.error = Outcome.CANCELLED, "the client went away before its request was read"
        except asyncio.CancelledError:
            self.status, self.error = Outcome.CANCELLED, "the gateway is stopping"
            raise
        except ProxyError as exc:
            self.record_error(exc)
            await self._send_error(send, exc)
        except Exception as exc:
            logger.error("model request %s failed in the gateway: %s", self.request_id, type(exc).__name__)
            self.record_error(exc)
            await self._send_error(send, exc)
        finally:
            await self.finish()

    async def _run(self, receive: Receive, send: Send) -> None:
        rt, parsed, principal, snapshot = self.rt, self.parsed, self.principal, self.snapshot
        assert parsed is not None and principal is not None and snapshot is not None
        resolved = rt.route(snapshot, principal, parsed.model, self.dialect)
        self.route = resolved.route
        rates = self._rates(resolved.targets[0])
        if rates is None and snapshot.prices.blocks_unknown:
            model = resolved.targets[0].model
            raise PermissionDenied(
                f"Model {echo(model)} has no known price and this gateway refuses unpriced models"
            )
        estimate = rates.estimate(len(parsed.body), parsed.max_tokens) if rates is not None else 0.0

        admitted = await admission.admit(
            rt.limiter,
            rt.budgets,
            snapshot.rate_plan(principal),
            resolved.budget_scopes,
            estimate,
            self.request_id,
        )
        if isinstance(admitted, RateDecision):
            raise RateLimited(admitted.message, admitted.retry_after, blocked_by=admitted.blocked_by)
        if isinstance(admitted, BudgetBlock):
            raise budget_error(admitted)
        self.ticket = admitted.ticket
        if admitted.reservation is not None:
            self.reservations.append(admitted.reservation)

        opened = await self._open(resolved.targets, estimate)
        if parsed.stream and opened.response.status == 200:
            await relay_stream(self, opened, receive, send)
        else:
            await relay_whole(self, opened, send)

    def _rates(self, target: Target) -> Rates | None:
        assert self.snapshot is not None
        prices = self.snapshot.prices
        provider = self.rt.providers.get(target.provider)
        if provider is None:
            return prices.rates(target.model)
        provider_id, api_url = provider.price_hint
        return prices.rates(target.model, provider_id, api_url)

    async def _open(self, targets: tuple[Target, ...], estimate: float) -> Opened:
        """Try each target in order until one answers; raises the right error when none does."""
        rt, parsed, snapshot = self.rt, self.parsed, self.snapshot
        assert parsed is not None and snapshot is not None
        failures: list[Failure] = []
        for target in targets:
            provider = rt.providers[target.provider]
            rates = self._rates(target)
            if rates is None and snapshot.prices.blocks_unknown:
                failures.append(
                    Failure(
                        target.provider,
                        None,
                        f"model {echo(target.model)} has no known price",
                        outcome=Outcome.UPSTREAM_UNAVAILABLE,
                    )
                )
                continue
            held = None
            provider_scopes = snapshot.budget_scopes.provider_scopes(target.provider)
            if provider_scopes:
                reserved = await rt.budgets.reserve(provider_scopes, estimate, self.request_id)
                if isinstance(reserved, BudgetBlock):
                    failures.append(
                        Failure(
                            target.provider,
                            None,
                            reserved.message,
                            budget=reserved,
                            outcome=Outcome.UPSTREAM_UNAVAILABLE,
                        )
                    )
                    continue
                held = reserved
            self.attempts += 1
            result = await try_target(
                provider, target, parsed, self.dialect, self.query, self.headers, rt.redact
            )
            if isinstance(result, Opened):
                self.provider, self.served_model, self.rates = target.provider, target.model, rates
                if held is not None:
                    self.reservations.append(held)
                return result
            failures.append(result)
            if held is not None:
                await rt.budgets.release(held)
            logger.warning(
                "provider %r failed for request %s (%s); %s",
                target.provider,
                self.request_id,
                result.detail,
                "trying the next target" if target is not targets[-1] else "no fallback left",
            )
        raise all_failed(failures)

    # -- errors and the end -----------------------------------------------------------------

    def record_error(self, exc: BaseException) -> None:
        """The row's status is the error's `Outcome`; anything not a `ProxyError` is a gateway bug."""
        if isinstance(exc, ProxyError):
            self.http_status, self.error_type, self.error = exc.status, exc.error_type, exc.message
            self.blocked_by = exc.blocked_by or self.blocked_by
            self.status = exc.outcome
        else:
            self.http_status, self.error_type = 500, "api_error"
            self.error, self.status = f"gateway failure: {type(exc).__name__}", Outcome.GATEWAY_ERROR

    async def _send_error(self, send: Send, exc: BaseException) -> None:
        if self.response_started:
            return
        status, headers, body = error_response(exc, self.dialect.flavor)
        headers.append((b"gateway-request-id", self.request_id.encode()))
        self.response_started = True
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def finish(self) -> None:
        rt, usage = self.rt, self.usage
        cost = self.rates.cost(usage) if self.rates is not None and usage is not ZERO_USAGE else 0.0
        try:
            alerts = await admission.finish(
                rt.limiter, rt.budgets, self.ticket, usage.rate_limited_tokens, self.reservations, cost
            )
            if alerts:
                rt.alerts.dispatch(alerts)
        finally:
            if self.principal is not None:
                rt.ledger.submit(self._row(cost))

    def _row(self, cost: float) -> ModelRequestRow:
        """The ledger row; every string a client (or a provider echoing one) chose is clipped."""
        principal, parsed, usage, headers = self.principal, self.parsed, self.usage, self.headers
        assert principal is not None
        ttfb = self.ttfb
        return {
            "request_id": self.request_id,
            "timestamp": self.arrived,  # seconds; the ledger writer makes it a datetime off the event loop
            "endpoint": self.dialect.name,
            "key_id": principal.key_id,
            "key_name": principal.key_name,
            "team": principal.team,
            "provider": self.provider,
            "requested_model": clip(parsed.model, MAX_NAME_CHARS) if parsed is not None else None,
            "served_model": clip(self.served_model, MAX_NAME_CHARS),
            "route": self.route,
            "attempts": self.attempts,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "usage_estimated": self.usage_estimated,
            "cost_usd": cost,
            "price_source": self.rates.source if self.rates is not None else None,
            "latency_ms": (time.perf_counter() - self.started) * 1000,
            "ttfb_ms": (ttfb - self.started) * 1000 if ttfb is not None else None,
            "stream": parsed.stream if parsed is not None else False,
            "status": self.status.value,
            "http_status": self.http_status,
            "error_type": self.error_type,
            "error": clip(self.error, MAX_ERROR_CHARS),
            "blocked_by": self.blocked_by,
            "session_id": clip(headers.get("x-claude-code-session-id"), MAX_ID_CHARS),
            "upstream_request_id": clip(self.upstream_request_id, MAX_ID_CHARS),
            "user_agent": clip(headers.get("user-agent"), MAX_ID_CHARS),
        }
