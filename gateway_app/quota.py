"""A virtual key's own quota: its rate limits and the budgets that apply to it, each with what is
used now, read from the live counters (`GET /v1/quota`, self-service with the key itself).

Composition root: it needs the rate limiter's counters (`policies.ratelimit`) and the budget book's
(`policies.budgeting`) through the same `CounterStore` the front doors use, so the numbers are the
ones the next request is judged by. A key learns about itself and what it shares: its own limits
and budget, its team's and the org's limits and budgets (their totals, never who spent them), and
the providers' budgets its requests may be charged against. Nothing about another key.

A concurrency limit's use is the requests of the key (or its team) in flight now.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from policies.budgeting import BudgetBook, BudgetScope
from policies.keys import Principal
from policies.ratelimit import MINUTE, RateLimiter
from policies.snapshot import PolicySnapshot


def _window(limit: Any, used: float | None, window: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {"scope": limit.scope, "metric": limit.metric, "limit": limit.value, "used": used}
    if window is not None:
        body["window_seconds"] = window
        body["remaining"] = max(0.0, limit.value - (used or 0.0))
    return body


async def rate_limits(
    snapshot: PolicySnapshot, principal: Principal, limiter: RateLimiter
) -> list[dict[str, Any]]:
    """Each limit on the key (its own, then its team's), with its use in the last minute."""
    plan = snapshot.rate_plan(principal)
    now = limiter.clock()
    found = []
    for limit in (*plan.windows, *plan.tool_calls):
        used = await limiter.store.window_used(limit.store_key, MINUTE, now)
        found.append(_window(limit, used, MINUTE))
    for limit in plan.slots:
        used = await limiter.store.slots_used(limit.store_key, now)
        found.append({**_window(limit, used, None), "remaining": max(0, limit.value - used)})
    return found


def _applying(snapshot: PolicySnapshot, principal: Principal) -> list[BudgetScope]:
    scopes = list(snapshot.caller_budgets(principal))
    scopes += [s for s in snapshot.budget_scopes.all_scopes() if s.kind == "provider"]
    return scopes


async def budgets(snapshot: PolicySnapshot, principal: Principal, book: BudgetBook) -> list[dict[str, Any]]:
    """Each budget the key's requests count against, in its current period."""
    now = book.clock()
    found = []
    for counter in book.counters(_applying(snapshot, principal), now):
        state = await book.store.spend_state(counter.key, now)
        spent = round(state.spent, 6)
        found.append(
            {
                "budget": counter.scope.ident,
                "scope": counter.scope.kind,
                "period": counter.period,
                "label": counter.label,
                "limit_usd": counter.limit,
                "spent_usd": spent,
                "remaining_usd": round(max(0.0, counter.limit - spent), 6),
                "resets_at": counter.end.isoformat(),
            }
        )
    return found


async def key_quota(
    snapshot: PolicySnapshot, principal: Principal, limiter: RateLimiter, book: BudgetBook
) -> dict[str, Any]:
    return {
        "key_id": principal.key_id,
        "name": principal.key_name,
        "team": principal.team,
        "at": datetime.fromtimestamp(limiter.clock(), UTC).isoformat(),
        "rate_limits": await rate_limits(snapshot, principal, limiter),
        "budgets": await budgets(snapshot, principal, book),
    }
