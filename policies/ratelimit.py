"""Rate-limit decisions: requests, tokens and concurrency per key and per team, and MCP tool calls.

A key's own ``rate_limit`` and its team's ``rate_limit`` both apply; a team's
limit is shared by all the team's keys. Windows slide over one minute.

- ``requests_per_minute`` and ``tool_calls_per_minute`` count admitted requests.
- ``tokens_per_minute`` counts real usage after each response: input (uncached
  plus cache writes) and output tokens, the way Anthropic counts its own input
  limits (cache reads are left out: an agent re-reads its whole cached context
  on every turn). A request is refused while the window is at or over the limit.
- ``concurrent_requests`` holds a slot from admission until the response ends.

Decisions are plain values; the adapter turns a refusal into HTTP 429.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policies.config import GatewayPolicy
from policies.counters import Clock, CounterStore, SlotCheck, SlotDenial, WindowCheck, WindowDenial
from policies.keys import Principal
from policies.limits import RateLimit

MINUTE = 60.0
SLOT_TTL = 3600.0
"""A concurrency slot is forgotten after this long even if never released (a replica died)."""
CONCURRENCY_RETRY_AFTER = 1.0


@dataclass(slots=True)
class RateDecision:
    allowed: bool
    retry_after: float = 0.0
    blocked_by: str | None = None
    """Which limit refused, e.g. ``rate_limit:key:vk_dev:requests_per_minute`` (for the ledger)."""
    message: str = ""
    ticket: RequestTicket | None = None
    """For an admitted model request: what `RateLimiter.finish` must release and charge."""

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds for a ``retry-after`` header (at least 1)."""
        return max(1, math.ceil(self.retry_after))


@dataclass(slots=True)
class RequestTicket:
    lease: str
    slot_keys: tuple[str, ...]
    token_keys: tuple[str, ...]


ALLOWED = RateDecision(True)


@dataclass(frozen=True, slots=True)
class _Limit:
    scope: str
    """``key:<id>`` or ``team:<name>``."""
    label: str
    """How the message names the scope: ``key 'vk_dev'``."""
    metric: str
    value: int

    @property
    def store_key(self) -> str:
        return f"rl:{self.scope}:{self.metric}"

    @property
    def blocked_by(self) -> str:
        return f"rate_limit:{self.scope}:{self.metric}"


@dataclass(frozen=True, slots=True)
class RatePlan:
    """A principal's limits under one policy, with the store checks built once (`build_rate_plan`)."""

    windows: tuple[_Limit, ...]
    """requests_per_minute (cost 1) then tokens_per_minute (cost 0, checked only)."""
    window_checks: tuple[WindowCheck, ...]
    slots: tuple[_Limit, ...]
    slot_checks: tuple[SlotCheck, ...]
    slot_keys: tuple[str, ...]
    token_keys: tuple[str, ...]
    tool_calls: tuple[_Limit, ...]
    tool_checks: tuple[WindowCheck, ...]

    @property
    def empty(self) -> bool:
        return not (self.windows or self.slots)


_UNITS = {
    "requests_per_minute": "requests per minute",
    "tokens_per_minute": "tokens per minute",
    "concurrent_requests": "concurrent requests",
    "tool_calls_per_minute": "tool calls per minute",
}


class RateLimiter:
    """Applies rate plans (from the current policy snapshot) through a `CounterStore` and a clock.

    It holds no policy: every call gets the caller's `RatePlan`, so a new policy applies to the
    next request while the counters (in the store) carry on.
    """

    def __init__(self, store: CounterStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # -- model requests --------------------------------------------------------------------

    async def acquire_request(self, plan: RatePlan, lease: str) -> RateDecision:
        """Admit one model request (or say which limit refuses it and when to retry)."""
        if plan.empty:
            return RateDecision(True, ticket=RequestTicket(lease, (), ()))
        now = self.clock()
        if plan.slot_checks:
            full = await self.store.slots_acquire(plan.slot_checks, lease, now, SLOT_TTL)
            if full is not None:
                return self.refusal(plan, SlotDenial(full))
        if plan.window_checks:
            denial = await self.store.window_hit(plan.window_checks, now)
            if denial is not None:
                if plan.slot_keys:
                    await self.store.slots_release(plan.slot_keys, lease)
                return self.refusal(plan, denial)
        return RateDecision(True, ticket=RequestTicket(lease, plan.slot_keys, plan.token_keys))

    async def finish(self, ticket: RequestTicket, tokens: int) -> None:
        """Release the request's concurrency slots and count its tokens."""
        if ticket.slot_keys:
            await self.store.slots_release(ticket.slot_keys, ticket.lease)
        if ticket.token_keys and tokens > 0:
            now = self.clock()
            for key in ticket.token_keys:
                await self.store.window_add(key, float(tokens), MINUTE, now)

    # -- MCP tool calls --------------------------------------------------------------------

    async def acquire_tool_call(self, plan: RatePlan) -> RateDecision:
        """Count one MCP tools/call against ``tool_calls_per_minute`` of the key and its team."""
        if not plan.tool_checks:
            return ALLOWED
        denial = await self.store.window_hit(plan.tool_checks, self.clock())
        if denial is None:
            return ALLOWED
        limit = plan.tool_calls[denial.index]
        return self._refusal(limit, denial.retry_after, f"{denial.used:g} used in the last minute")

    # -- helpers ---------------------------------------------------------------------------

    @classmethod
    def refusal(cls, plan: RatePlan, denial: SlotDenial | WindowDenial) -> RateDecision:
        """The refusal (message, retry-after, ledger name) a store's denial under ``plan`` means."""
        if isinstance(denial, SlotDenial):
            limit = plan.slots[denial.index]
            return cls._refusal(limit, CONCURRENCY_RETRY_AFTER, "requests are already in flight")
        limit = plan.windows[denial.index]
        return cls._refusal(limit, denial.retry_after, f"{denial.used:g} used in the last minute")

    @staticmethod
    def _refusal(limit: _Limit, retry_after: float, detail: str) -> RateDecision:
        unit = _UNITS[limit.metric]
        seconds = max(1, math.ceil(retry_after))
        message = f"Rate limit: {limit.label} allows {limit.value} {unit} ({detail}); retry in {seconds} s"
        return RateDecision(False, retry_after, limit.blocked_by, message)


def build_rate_plan(policy: GatewayPolicy, principal: Principal, own: RateLimit | None = None) -> RatePlan:
    """The limits of a key and its team under ``policy`` (a key's own and its team's both apply).

    ``own``: the key's own limits when they are kept outside the file (a database key's).
    """
    scoped: list[tuple[str, str, RateLimit]] = []
    if own is None:
        key = policy.key(principal.key_id)
        own = key.rate_limit if key is not None else None
    if own is not None:
        scoped.append((f"key:{principal.key_id}", f"key {principal.key_id!r}", own))
    team = policy.team(principal.team)
    if team is not None and team.rate_limit is not None:
        scoped.append((f"team:{team.name}", f"team {team.name!r}", team.rate_limit))

    def limits(metric: str) -> tuple[_Limit, ...]:
        found = []
        for scope, label, rate in scoped:
            value = getattr(rate, metric)
            if value is not None:
                found.append(_Limit(scope, label, metric, int(value)))
        return tuple(found)

    requests, tokens = limits("requests_per_minute"), limits("tokens_per_minute")
    slots, tool_calls = limits("concurrent_requests"), limits("tool_calls_per_minute")
    return RatePlan(
        windows=(*requests, *tokens),
        window_checks=(
            *(WindowCheck(limit.store_key, limit.value, MINUTE, 1.0) for limit in requests),
            *(WindowCheck(limit.store_key, limit.value, MINUTE, 0.0) for limit in tokens),
        ),
        slots=slots,
        slot_checks=tuple(SlotCheck(limit.store_key, limit.value) for limit in slots),
        slot_keys=tuple(limit.store_key for limit in slots),
        token_keys=tuple(limit.store_key for limit in tokens),
        tool_calls=tool_calls,
        tool_checks=tuple(WindowCheck(limit.store_key, limit.value, MINUTE, 1.0) for limit in tool_calls),
    )
