"""Trying one provider target, and what to tell the client when none answered.

A target "fails" (and the next one is tried) on a connection error or timeout,
on HTTP 401/403 (the provider refused the gateway's own key), 408, 429 and 5xx,
and when a stream opens with an error event: all of these happen before any
byte has been relayed to the client. Other provider answers (a 400 for a bad
request, say) are the client's to see and are relayed as they are.

Each failure carries the `Outcome` it stands for, so that a request no target
answered is recorded as what went wrong: ``upstream_unavailable`` (could not
connect, no key: nothing was sent), ``timeout`` (the provider stayed silent past
``timeout_seconds``) or ``upstream_error`` (it answered with an error, or broke
the connection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from gateway_common.http import ConnectError, HttpClientError, ReadTimeout
from gateway_common.http import HttpResponse as Response
from llm_proxy.dialects import Dialect, ParsedRequest
from llm_proxy.errors import BillingBlocked, Overloaded, ProxyError, RateLimited, UpstreamFailed
from llm_proxy.upstream import ProviderClient, ProviderUnavailable, describe_failure
from llm_proxy.usage import first_event_is_error
from policies.budgeting import BudgetBlock
from policies.outcomes import Outcome
from policies.routing import Target

RETRY_STATUSES = frozenset({401, 403, 408, 429, 500, 502, 503, 504, 529})
UPSTREAM_ERRORS = (HttpClientError, TimeoutError, OSError, ProviderUnavailable)


@dataclass(slots=True)
class Failure:
    provider: str
    status: int | None
    detail: str
    retry_after: str | None = None
    overloaded: bool = False
    budget: BudgetBlock | None = None
    outcome: Outcome = Outcome.UPSTREAM_ERROR


def failure_outcome(exc: BaseException) -> Outcome:
    """What a connection failure means for the ledger: unreachable, silent too long, or broken."""
    if isinstance(exc, ConnectError | ProviderUnavailable):
        return Outcome.UPSTREAM_UNAVAILABLE
    if isinstance(exc, ReadTimeout | TimeoutError):
        return Outcome.TIMEOUT
    return Outcome.UPSTREAM_ERROR


@dataclass(slots=True)
class Opened:
    target: Target
    response: Response
    first: bytes
    """Non-stream: the whole body (already read, connection released). Stream: the first chunk."""


async def try_target(
    provider: ProviderClient,
    target: Target,
    parsed: ParsedRequest,
    dialect: Dialect,
    query: str,
    headers: dict[str, str],
    scrub: Callable[[bytes], bytes],
) -> Opened | Failure:
    """Send the request to one target; an `Opened` response is committed to, a `Failure` is not."""
    body = parsed.body_for(target.model)
    try:
        response = await provider.send(dialect.path, query, body, headers)
    except UPSTREAM_ERRORS as exc:
        return Failure(provider.name, None, describe_failure(exc), outcome=failure_outcome(exc))
    try:
        status = response.status
        if status in RETRY_STATUSES:
            raw = await response.read()
            detail = error_detail(scrub(raw))
            if status in (401, 403):
                detail = f"the provider refused the gateway's key ({detail})"
            overloaded = status == 529 or "overloaded" in detail
            return Failure(provider.name, status, detail, response.headers.get("retry-after"), overloaded)
        if parsed.stream and status == 200:
            first = await response.read_some()
            if first_event_is_error(first):
                response.close()
                detail = error_detail(scrub(first.split(b"data:", 1)[-1]))
                return Failure(provider.name, 200, f"stream opened with an error: {detail}", None, True)
            return Opened(target, response, first)
        whole = await response.read()
        return Opened(target, response, whole)
    except UPSTREAM_ERRORS as exc:
        response.close()
        return Failure(provider.name, None, describe_failure(exc), outcome=failure_outcome(exc))
    except BaseException:  # cancelled: the connection (and its pool slot) must not be left behind
        response.close()
        raise


def budget_error(block: BudgetBlock) -> ProxyError:
    """402 when the budget is spent; 429 (retry soon) when the rest is held by requests in flight."""
    if block.committed:
        return RateLimited(
            block.message, block.retry_after, blocked_by=block.blocked_by, outcome=Outcome.BUDGET_EXCEEDED
        )
    return BillingBlocked(block.message, blocked_by=block.blocked_by)


_SEVERITY = (Outcome.UPSTREAM_ERROR, Outcome.TIMEOUT, Outcome.UPSTREAM_UNAVAILABLE)


def _worst(failures: list[Failure]) -> Outcome:
    """A provider that answered with an error outranks one that timed out, which outranks one not reached."""
    found = {f.outcome for f in failures}
    return next((outcome for outcome in _SEVERITY if outcome in found), Outcome.UPSTREAM_UNAVAILABLE)


def all_failed(failures: list[Failure]) -> ProxyError:
    """The error for a request no target could answer: 429, 529 or 502 after the last failure."""
    if failures and all(f.budget is not None for f in failures):
        block = failures[0].budget
        assert block is not None
        return budget_error(block)
    summary = "; ".join(
        f"{f.provider}: " + (f"HTTP {f.status} " if f.status else "") + f.detail for f in failures
    )
    message = f"No provider could answer ({summary})"
    outcome = _worst(failures)
    last = failures[-1] if failures else None
    if last is not None and last.status == 429:
        retry = float(last.retry_after) if last.retry_after and last.retry_after.isdigit() else 1.0
        return RateLimited(message, retry, outcome=outcome)
    if last is not None and last.overloaded:
        return Overloaded(message, outcome=outcome)
    return UpstreamFailed(message, outcome=outcome)


def error_type(body: bytes) -> str | None:
    """The ``error.type`` of a provider's error body, if it has one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return str(error["type"])
    return None


def error_detail(body: bytes) -> str:
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
