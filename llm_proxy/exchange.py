"""One model request from arrival to ledger row: admit, forward with fallbacks, relay, settle, record.

Order of checks: key (401), body size and shape (413, 400), route (404), model
permission (403), price known (403 when unknown models are blocked), rate limits
(429), then the caller's budgets are reserved (402, or 429 while the rest of a
budget is held by requests in flight). Each target is then tried in order; a
provider budget is reserved per target, and connection errors, timeouts, 5xx,
429 and a refused provider key move on to the next target as long as nothing has
reached the client. Streams are relayed chunk by chunk as they arrive. Whatever
happens, `finish` releases the concurrency slot, counts tokens, settles the
reservations to the real cost, dispatches alerts and submits one ledger row.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from starlette.types import Receive, Scope, Send

from mcp_gateway.auth import bearer_token
from policies import Principal
from policies.budgeting import BudgetBlock, Reservation
from policies.pricing import ZERO_USAGE, Rates, Usage
from policies.ratelimit import RequestTicket
from policies.routing import Target

from .dialects import Dialect, ParsedRequest
from .errors import (
    AuthenticationFailed,
    BillingBlocked,
    ClientGone,
    NotFound,
    Overloaded,
    PermissionDenied,
    ProxyError,
    RateLimited,
    RequestTooLarge,
    UpstreamFailed,
    error_response,
    stream_error_event,
)
from .runtime import LlmRuntime
from .upstream import ProviderClient, ProviderUnavailable, describe_failure
from .usage import StreamMeter, first_event_is_error, usage_from_body

logger = logging.getLogger("llm_proxy")

RETRY_STATUSES = frozenset({401, 403, 408, 429, 500, 502, 503, 504, 529})
"""Provider answers that move on to the next target (401/403: the gateway's provider key was refused)."""
UPSTREAM_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, ProviderUnavailable)
WANTED_HEADERS = frozenset(
    {
        "x-api-key",
        "authorization",
        "anthropic-version",
        "anthropic-beta",
        "content-length",
        "x-claude-code-session-id",
        "user-agent",
    }
)


def client_headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if name in WANTED_HEADERS and name not in found:
            found[name] = raw_value.decode("latin-1")
    return found


async def authenticate(rt: LlmRuntime, headers: dict[str, str]) -> Principal:
    secret = headers.get("x-api-key") or bearer_token(headers.get("authorization"))
    if not secret:
        raise AuthenticationFailed(
            "Missing virtual key: send it in the x-api-key header or as 'Authorization: Bearer <key>'"
        )
    principal = await rt.keys.authenticate(secret, raw=True)
    if principal is None:
        raise AuthenticationFailed("Invalid virtual key (unknown, revoked or expired)")
    return principal


async def read_body(receive: Receive, limit: int, content_length: str | None) -> bytes:
    too_large = RequestTooLarge(f"Request body is larger than the gateway's limit of {limit} bytes")
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def budget_error(block: BudgetBlock) -> ProxyError:
    if block.committed:
        return RateLimited(block.message, block.retry_after, blocked_by=block.blocked_by)
    return BillingBlocked(block.message, blocked_by=block.blocked_by)


@dataclass(slots=True)
class _Attempt:
    provider: str
    status: int | None
    detail: str
    retry_after: str | None = None
    overloaded: bool = False
    budget: BudgetBlock | None = None


@dataclass(slots=True)
class _Opened:
    target: Target
    response: aiohttp.ClientResponse
    first: bytes
    """Non-stream: the whole body (already read). Stream: the first chunk."""


class Exchange:
    def __init__(self, rt: LlmRuntime, dialect: Dialect, scope: Scope) -> None:
        self.rt = rt
        self.dialect = dialect
        self.started = time.perf_counter()
        self.timestamp = datetime.fromtimestamp(rt.clock(), UTC)
        self.request_id = uuid.uuid4().hex
        self.headers = client_headers(scope)
        self.query = scope.get("query_string", b"").decode("latin-1")
        self.principal: Principal | None = None
        self.parsed: ParsedRequest | None = None
        self.route: str | None = None
        self.provider: str | None = None
        self.served_model: str | None = None
        self.attempts = 0
        self.usage: Usage = ZERO_USAGE
        self.rates: Rates | None = None
        self.ttfb: float | None = None
        self.status = "ok"
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

    # -- the whole request ---------------------------------------------------------------

    async def handle(self, receive: Receive, send: Send) -> None:
        try:
            self.principal = await authenticate(self.rt, self.headers)
            body = await read_body(
                receive, self.rt.settings.max_body_bytes, self.headers.get("content-length")
            )
            self.parsed = self.dialect.parse(body)
            await self._run(receive, send)
        except ClientGone:
            self.status, self.error = "cancelled", "the client went away before its request was read"
        except ProxyError as exc:
            self._record_error(exc)
            await self._send_error(send, exc)
        except Exception as exc:
            logger.error("model request %s failed in the gateway: %s", self.request_id, type(exc).__name__)
            self._record_error(exc)
            await self._send_error(send, exc)
        finally:
            await self.finish()

    async def _run(self, receive: Receive, send: Send) -> None:
        rt, parsed, principal = self.rt, self.parsed, self.principal
        assert parsed is not None and principal is not None
        routed = rt.router.route(parsed.model, principal)
        if routed is None:
            raise NotFound(f"Model {parsed.model!r} is not served by this gateway (no route matches it)")
        targets = [t for t in routed.targets if t.kind == self.dialect.kind]
        if not targets:
            raise NotFound(
                f"Model {parsed.model!r} is routed to a provider that does not speak this API; "
                f"use {'/v1/messages' if self.dialect.openai else '/v1/chat/completions'}"
            )
        self.route = routed.route
        if not rt.router.allows(principal, parsed.model, targets[0].model):
            raise PermissionDenied(f"Key {principal.key_id!r} may not use model {parsed.model!r}")
        rates = self._rates(targets[0])
        if rates is None and rt.prices.blocks_unknown:
            raise PermissionDenied(
                f"Model {targets[0].model!r} has no known price and this gateway refuses unpriced models"
            )
        estimate = rates.estimate(len(parsed.body), parsed.max_tokens) if rates is not None else 0.0

        decision = await rt.limiter.acquire_request(principal, self.request_id)
        if not decision.allowed:
            raise RateLimited(decision.message, decision.retry_after, blocked_by=decision.blocked_by)
        self.ticket = decision.ticket
        scopes = rt.budgets.caller_scopes(principal)
        if scopes:
            reserved = await rt.budgets.reserve(scopes, estimate, self.request_id)
            if isinstance(reserved, BudgetBlock):
                raise budget_error(reserved)
            self.reservations.append(reserved)

        opened = await self._open(targets, estimate)
        if parsed.stream and opened.response.status == 200:
            await self._relay_stream(opened, receive, send)
        else:
            await self._relay_whole(opened, send)

    def _rates(self, target: Target) -> Rates | None:
        provider = self.rt.providers.get(target.provider)
        hint = provider.price_hint if provider is not None else (None, None)
        return self.rt.prices.rates(target.model, *hint)

    # -- forwarding with fallbacks --------------------------------------------------------

    async def _open(self, targets: list[Target], estimate: float) -> _Opened:
        rt, parsed = self.rt, self.parsed
        assert parsed is not None
        failures: list[_Attempt] = []
        for target in targets:
            provider = rt.providers[target.provider]
            rates = self._rates(target)
            if rates is None and rt.prices.blocks_unknown:
                failures.append(_Attempt(target.provider, None, f"model {target.model!r} has no known price"))
                continue
            held = None
            provider_scopes = rt.budgets.provider_scopes(target.provider)
            if provider_scopes:
                reserved = await rt.budgets.reserve(provider_scopes, estimate, self.request_id)
                if isinstance(reserved, BudgetBlock):
                    failures.append(_Attempt(target.provider, None, reserved.message, budget=reserved))
                    continue
                held = reserved
            self.attempts += 1
            failure = await self._try(provider, target, parsed)
            if isinstance(failure, _Opened):
                self.provider, self.served_model, self.rates = target.provider, target.model, rates
                if held is not None:
                    self.reservations.append(held)
                return failure
            failures.append(failure)
            if held is not None:
                await rt.budgets.release(held)
            logger.warning(
                "provider %r failed for request %s (%s); %s",
                target.provider,
                self.request_id,
                failure.detail,
                "trying the next target" if target is not targets[-1] else "no fallback left",
            )
        raise self._all_failed(failures)

    async def _try(
        self, provider: ProviderClient, target: Target, parsed: ParsedRequest
    ) -> _Opened | _Attempt:
        body = parsed.body_for(target.model)
        try:
            response = await provider.send("POST", self.dialect.path, self.query, body, self.headers)
        except UPSTREAM_ERRORS as exc:
            return _Attempt(provider.name, None, describe_failure(exc))
        try:
            if response.status in RETRY_STATUSES:
                detail = _error_detail(self.rt.redact(await response.read()))
                response.release()
                overloaded = response.status == 529 or "overloaded" in detail
                retry_after = response.headers.get("retry-after")
                if response.status in (401, 403):
                    detail = f"the provider refused the gateway's key ({detail})"
                return _Attempt(provider.name, response.status, detail, retry_after, overloaded)
            if parsed.stream and response.status == 200:
                first = await response.content.readany()
                if first_event_is_error(first):
                    response.close()
                    detail = _error_detail(self.rt.redact(first.split(b"data:", 1)[-1]))
                    return _Attempt(provider.name, 200, f"stream opened with an error: {detail}", None, True)
                return _Opened(target, response, first)
            whole = await response.read()
            response.release()
            return _Opened(target, response, whole)
        except UPSTREAM_ERRORS as exc:
            response.close()
            return _Attempt(provider.name, None, describe_failure(exc))

    def _all_failed(self, failures: list[_Attempt]) -> ProxyError:
        if failures and all(f.budget is not None for f in failures):
            block = failures[0].budget
            assert block is not None
            return budget_error(block)
        summary = "; ".join(
            f"{f.provider}: " + (f"HTTP {f.status} " if f.status else "") + f.detail for f in failures
        )
        message = f"No provider could answer ({summary})"
        last = failures[-1] if failures else None
        if last is not None and last.status == 429:
            retry = float(last.retry_after) if last.retry_after and last.retry_after.isdigit() else 1.0
            return RateLimited(message, retry)
        if last is not None and last.overloaded:
            return Overloaded(message)
        return UpstreamFailed(message)

    # -- relaying ---------------------------------------------------------------------------

    def _response_headers(
        self, response: aiohttp.ClientResponse, content_type: str
    ) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"gateway-request-id", self.request_id.encode()),
        ]
        upstream_id = response.headers.get("request-id") or response.headers.get("x-request-id")
        if upstream_id:
            self.upstream_request_id = upstream_id[:128]
            headers.append((b"request-id", upstream_id.encode("latin-1")))
        return headers

    async def _relay_whole(self, opened: _Opened, send: Send) -> None:
        response, body = opened.response, opened.first
        self.http_status = response.status
        if response.status < 300:
            self.usage, model = usage_from_body(body, self.dialect.openai)
            self.served_model = model or self.served_model
        else:
            body = self.rt.redact(body)
            self.status, self.error_type = "provider_error", _error_type(body)
            self.error = _error_detail(body)
        headers = self._response_headers(response, response.headers.get("content-type", "application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        if response.status == 429 and response.headers.get("retry-after"):
            headers.append((b"retry-after", response.headers["retry-after"].encode("latin-1")))
        self.response_started = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        self.ttfb = time.perf_counter()
        await send({"type": "http.response.body", "body": body})

    async def _relay_stream(self, opened: _Opened, receive: Receive, send: Send) -> None:
        response = opened.response
        meter = StreamMeter(self.dialect.openai)
        headers = self._response_headers(response, response.headers.get("content-type", "text/event-stream"))
        headers.append((b"cache-control", b"no-cache"))
        self.response_started = self.relaying = True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        watcher = asyncio.create_task(self._watch_disconnect(receive, response))
        chunk = opened.first
        complete = False
        try:
            while chunk:
                meter.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if self.ttfb is None:
                    self.ttfb = time.perf_counter()
                chunk = await response.content.readany()
            complete = True
        except UPSTREAM_ERRORS as exc:
            if not self.client_gone:
                failure = UpstreamFailed(
                    f"provider {self.provider!r} broke off the stream: {describe_failure(exc)}"
                )
                self._record_error(failure)
                await send(
                    {
                        "type": "http.response.body",
                        "body": stream_error_event(failure, self.dialect.flavor),
                        "more_body": True,
                    }
                )
        finally:
            self.relaying = False
            watcher.cancel()
            if complete:
                response.release()
            else:
                response.close()
            self.usage = meter.usage
            self.served_model = meter.model or self.served_model
        if self.client_gone:
            self.status, self.error = "cancelled", "the client closed the stream"
            return
        if meter.error_type is not None and self.status == "ok":
            self.status, self.error_type, self.error = (
                "upstream_error",
                meter.error_type,
                "error event in the stream",
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch_disconnect(self, receive: Receive, response: aiohttp.ClientResponse) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if self.relaying:
                    self.client_gone = True
                    response.close()
                return

    # -- errors and the end -------------------------------------------------------------------

    def _record_error(self, exc: BaseException) -> None:
        if isinstance(exc, ProxyError):
            self.http_status, self.error_type, self.error = exc.status, exc.error_type, exc.message
            self.blocked_by = exc.blocked_by or self.blocked_by
            upstream = isinstance(exc, UpstreamFailed | Overloaded) or (
                isinstance(exc, RateLimited) and not exc.blocked_by
            )
            self.status = "upstream_error" if upstream and self.attempts else "rejected"
        else:
            self.http_status, self.error_type = 500, "api_error"
            self.error, self.status = f"gateway failure: {type(exc).__name__}", "upstream_error"

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
            if self.ticket is not None:
                await rt.limiter.finish(self.ticket, usage.rate_limited_tokens)
            alerts = []
            for reservation in self.reservations:
                alerts.extend(await rt.budgets.settle(reservation, cost))
            if alerts:
                rt.alerts.dispatch(alerts)
        finally:
            if self.principal is not None:
                rt.ledger.submit(self._row(cost))

    def _row(self, cost: float) -> dict[str, Any]:
        principal, parsed, usage = self.principal, self.parsed, self.usage
        assert principal is not None
        now = time.perf_counter()
        agent = self.headers.get("user-agent")
        return {
            "request_id": self.request_id,
            "timestamp": self.timestamp,
            "endpoint": self.dialect.name,
            "key_id": principal.key_id,
            "key_name": principal.key_name,
            "team": principal.team,
            "provider": self.provider,
            "requested_model": parsed.model if parsed is not None else None,
            "served_model": self.served_model,
            "route": self.route,
            "attempts": self.attempts,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "cost_usd": cost,
            "price_source": self.rates.source if self.rates is not None else None,
            "latency_ms": (now - self.started) * 1000,
            "ttfb_ms": (self.ttfb - self.started) * 1000 if self.ttfb is not None else None,
            "stream": parsed.stream if parsed is not None else False,
            "status": self.status,
            "http_status": self.http_status,
            "error_type": self.error_type,
            "error": self.error[:1000] if self.error else None,
            "blocked_by": self.blocked_by,
            "session_id": self.headers.get("x-claude-code-session-id"),
            "upstream_request_id": self.upstream_request_id,
            "user_agent": agent[:200] if agent else None,
        }


def _error_type(body: bytes) -> str | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return str(error["type"])
    return None


def _error_detail(body: bytes) -> str:
    """A short, printable summary of a provider's error body."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        return text or "no body"
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code") or "error"
        message = str(error.get("message", ""))[:200]
        return f"{kind}: {message}" if message else str(kind)
    return str(payload)[:200]
