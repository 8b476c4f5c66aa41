"""Budget decisions: reserve an estimate before forwarding, settle to the real cost after.

Budgets exist for the org, teams, keys and providers, each with daily, weekly
(ISO weeks, from Monday) and monthly limits over calendar periods in UTC. Every
budget that applies to a request must allow it, and its cost is charged to all
of them.

Why reserve: a gateway that checks the spend and charges after the response lets
every request in flight through on the same stale number. Here a request is
admitted only while ``spent + reserved < limit`` on each counter, and the
admission reserves the request's estimated cost (see `pricing.Rates.estimate`)
in the same atomic step. When the estimate is an upper bound of the real cost,
the spend can pass the limit by at most the cost of the last request admitted.

A refusal is either *spent* (``spent >= limit``: nothing will change until the
period resets; HTTP 402) or *committed* (what is left is reserved by requests in
flight; HTTP 429 with a short retry, since it frees up as they settle).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from policies.budgets import BudgetLimits
from policies.config import GatewayPolicy
from policies.counters import Clock, CounterStore, SpendCheck, SpendDenial, SpendState
from policies.keys import Principal

Period = Literal["daily", "weekly", "monthly"]
ScopeKind = Literal["org", "team", "key", "provider"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
RESERVATION_TTL = 3600.0
"""A reservation is dropped after this long even if never settled (its replica died)."""
COUNTER_GRACE = 7 * 86_400.0
"""Counters are kept this long after their period ends (late settlements still land)."""
COMMITTED_RETRY_AFTER = 2.0


def period_bounds(period: Period, now: float) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of the UTC calendar period containing ``now``.

    Computed from whole seconds: ``datetime.fromtimestamp`` rounds to the microsecond, which put
    the last half-microsecond of a period into the next one.
    """
    moment = datetime.fromtimestamp(math.floor(now), UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day, day + timedelta(days=1)
    if period == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days)


def period_label(period: Period, start: datetime) -> str:
    if period == "daily":
        return start.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m")


def counter_key(ident: str, period: str, label: str) -> str:
    return f"budget:{ident}:{period}:{label}"


@dataclass(frozen=True, slots=True)
class BudgetScope:
    kind: ScopeKind
    name: str
    """Team name, key id or provider name; empty for the org."""
    limits: tuple[tuple[Period, float], ...]
    alert_threshold: float | None

    @property
    def ident(self) -> str:
        return self.kind if self.kind == "org" else f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Counter:
    scope: BudgetScope
    period: Period
    limit: float
    label: str
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        return counter_key(self.scope.ident, self.period, self.label)

    @property
    def expires_at(self) -> float:
        """When the store may forget this counter."""
        return self.end.timestamp() + COUNTER_GRACE

    @property
    def budget(self) -> str:
        """How messages and the ledger name it: ``team:frontend monthly``."""
        return f"{self.scope.ident} {self.period}"


@dataclass(frozen=True, slots=True)
class BudgetBlock:
    counter: Counter
    spent: float
    reserved: float
    committed: bool
    """True: refused because the rest is reserved by requests in flight (retry soon)."""
    now: float
    """When the decision was made (the injected clock)."""

    @property
    def blocked_by(self) -> str:
        return f"budget:{self.counter.scope.ident}:{self.counter.period}"

    @property
    def retry_after(self) -> float:
        if self.committed:
            return COMMITTED_RETRY_AFTER
        return max(self.counter.end.timestamp() - self.now, 1.0)

    @property
    def message(self) -> str:
        c = self.counter
        resets = c.end.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.committed:
            return (
                f"Budget {c.budget} ({c.label}) is fully committed: ${self.spent:.4f} spent and "
                f"${self.reserved:.4f} reserved by requests in flight, of a ${c.limit:.2f} limit; "
                "retry when they finish"
            )
        return (
            f"Budget {c.budget} ({c.label}) is spent: ${self.spent:.4f} of a ${c.limit:.2f} limit; "
            f"it resets at {resets}"
        )


@dataclass(slots=True)
class Reservation:
    lease: str
    counters: tuple[Counter, ...]
    amount: float
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """The counters of a set of scopes for the current periods, with their store checks."""

    valid_from: float
    valid_until: float
    counters: tuple[Counter, ...]
    checks: tuple[SpendCheck, ...]
    keys: tuple[str, ...]

    def block(self, denial: SpendDenial, now: float) -> BudgetBlock:
        """The refusal a store's denial of one of these counters means."""
        state = denial.state
        counter = self.counters[denial.index]
        return BudgetBlock(counter, state.spent, state.reserved, state.spent < counter.limit, now)


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    kind: Literal["threshold", "exhausted"]
    counter: Counter
    threshold: float
    """Fraction of the limit that was reached (1.0 for ``exhausted``)."""
    spent: float
    at: datetime

    @property
    def message(self) -> str:
        c = self.counter
        what = f"{self.threshold:.0%} alert threshold" if self.kind == "threshold" else "limit"
        return (
            f"budget {c.budget} ({c.label}) reached its {what}: ${self.spent:.4f} of ${c.limit:.2f}; "
            f"resets at {c.end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )


@dataclass(frozen=True, slots=True)
class SpendRow:
    """Spend already recorded (from the ledger) for rebuilding counters after a restart."""

    key_id: str
    team: str | None
    provider: str | None
    cost_usd: float


def _utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _limits(config: BudgetLimits) -> tuple[tuple[Period, float], ...]:
    found = config.limits()
    return tuple((period, found[period]) for period in PERIODS if period in found)


class BudgetScopes:
    """Which budgets a policy defines and which apply to a caller or a provider (pure, per snapshot)."""

    def __init__(self, policy: GatewayPolicy, key_budgets: Mapping[str, BudgetLimits] | None = None) -> None:
        """``key_budgets``: budgets of keys kept outside the file (database keys'), by key id; each
        replaces a ``budgets.keys`` entry of the same id."""
        budgets = policy.budgets
        default = budgets.default_alert_threshold

        def scope(kind: ScopeKind, name: str, config: BudgetLimits) -> BudgetScope:
            threshold = config.alert_threshold if config.alert_threshold is not None else default
            return BudgetScope(kind, name, _limits(config), threshold)

        self._org = scope("org", "", budgets.org) if budgets.org is not None else None
        self._teams = {b.name: scope("team", b.name, b) for b in budgets.teams}
        self._keys = {b.id: scope("key", b.id, b) for b in budgets.keys}
        self._keys.update((key_id, scope("key", key_id, b)) for key_id, b in (key_budgets or {}).items())
        self._providers = {b.name: scope("provider", b.name, b) for b in budgets.providers}

    @property
    def enabled(self) -> bool:
        return bool(self._org or self._teams or self._keys or self._providers)

    def caller_scopes(self, principal: Principal) -> tuple[BudgetScope, ...]:
        """The org's, the caller's team's and the caller's own budgets."""
        scopes = []
        if self._org is not None:
            scopes.append(self._org)
        if principal.team is not None and principal.team in self._teams:
            scopes.append(self._teams[principal.team])
        if principal.key_id in self._keys:
            scopes.append(self._keys[principal.key_id])
        return tuple(scopes)

    def provider_scopes(self, provider: str) -> tuple[BudgetScope, ...]:
        found = self._providers.get(provider)
        return (found,) if found is not None else ()

    def all_scopes(self) -> list[BudgetScope]:
        scopes = [self._org] if self._org is not None else []
        return [*scopes, *self._teams.values(), *self._keys.values(), *self._providers.values()]

    def charged_by(self, row: SpendRow) -> list[BudgetScope]:
        """Every budget a recorded request's cost counts against."""
        scopes = [self._org] if self._org is not None else []
        if row.team is not None and row.team in self._teams:
            scopes.append(self._teams[row.team])
        if row.key_id in self._keys:
            scopes.append(self._keys[row.key_id])
        if row.provider is not None and row.provider in self._providers:
            scopes.append(self._providers[row.provider])
        return scopes


class BudgetBook:
    """Reserves and settles spend against budget counters in a `CounterStore`.

    It holds no policy: callers pass the scopes (from the current snapshot's `BudgetScopes`),
    so a new policy applies to the next request while spend carries on in the store.
    """

    def __init__(self, store: CounterStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._plans: dict[tuple[BudgetScope, ...], BudgetPlan] = {}

    def counters(self, scopes: Iterable[BudgetScope], now: float | None = None) -> tuple[Counter, ...]:
        now = self.clock() if now is None else now
        found = []
        for scope in scopes:
            for period, limit in scope.limits:
                start, end = period_bounds(period, now)
                found.append(Counter(scope, period, limit, period_label(period, start), start, end))
        return tuple(found)

    # -- reserve and settle ----------------------------------------------------------------

    def plan(self, scopes: tuple[BudgetScope, ...], now: float) -> BudgetPlan:
        """The counters of ``scopes`` for the periods containing ``now``, with their store checks."""
        plan = self._plans.get(scopes)
        if plan is None or not plan.valid_from <= now < plan.valid_until:
            if len(self._plans) >= 4096:  # scopes of replaced policies are never asked for again
                self._plans.clear()
            counters = self.counters(scopes, now)
            plan = BudgetPlan(
                valid_from=max(c.start.timestamp() for c in counters),
                valid_until=min(c.end.timestamp() for c in counters),
                counters=counters,
                checks=tuple(SpendCheck(c.key, c.limit, c.expires_at) for c in counters),
                keys=tuple(c.key for c in counters),
            )
            self._plans[scopes] = plan
        return plan

    async def reserve(
        self, scopes: tuple[BudgetScope, ...], amount: float, lease: str
    ) -> Reservation | BudgetBlock:
        """Hold ``amount`` on every counter of ``scopes``, or say which one refuses."""
        if not scopes:
            return Reservation(lease, (), amount)
        now = self.clock()
        plan = self.plan(scopes, now)
        denial = await self.store.spend_reserve(plan.checks, lease, amount, now, RESERVATION_TTL)
        if denial is None:
            return Reservation(lease, plan.counters, amount, plan.keys)
        return plan.block(denial, now)

    async def settle(self, reservation: Reservation, actual: float) -> list[BudgetAlert]:
        """Replace the reservation by the real cost; returns the alerts this crossing fires."""
        if not reservation.counters:
            return []
        now = self.clock()
        states = await self.store.spend_settle(reservation.keys, reservation.lease, actual, now)
        return await self.alerts(reservation, states, actual, now)

    async def alerts(
        self, reservation: Reservation, states: Sequence[SpendState], actual: float, now: float
    ) -> list[BudgetAlert]:
        """The alerts a settlement of ``actual`` that left its counters at ``states`` fires (once each)."""
        if actual <= 0:
            return []
        alerts: list[BudgetAlert] = []
        for counter, state in zip(reservation.counters, states, strict=True):
            threshold = counter.scope.alert_threshold
            crossed = threshold is not None and threshold < 1.0 and state.spent >= threshold * counter.limit
            if crossed and await self.store.once(f"alert:threshold:{counter.key}", counter.expires_at):
                alerts.append(BudgetAlert("threshold", counter, threshold or 0.0, state.spent, _utc(now)))
            exhausted = state.spent >= counter.limit
            if exhausted and await self.store.once(f"alert:exhausted:{counter.key}", counter.expires_at):
                alerts.append(BudgetAlert("exhausted", counter, 1.0, state.spent, _utc(now)))
        return alerts

    async def release(self, reservation: Reservation) -> None:
        """Drop a reservation that was never used (the request failed before reaching a provider)."""
        await self.settle(reservation, 0.0)

    # -- after a restart -------------------------------------------------------------------

    async def restore(self, period: Period, rows: Iterable[SpendRow], scopes: BudgetScopes) -> int:
        """Seed the current ``period``'s counters from spend recorded since it started.

        ``rows`` must cover exactly the ledger since `period_bounds(period, now)[0]`.
        Counters the store already has (a shared store kept them) are left alone.
        """
        now = self.clock()
        totals: dict[str, float] = {}
        for row in rows:
            for scope in scopes.charged_by(row):
                totals[scope.ident] = totals.get(scope.ident, 0.0) + row.cost_usd
        seeded = 0
        for counter in self.counters(scopes.all_scopes(), now):
            if counter.period != period:
                continue
            spent = totals.get(counter.scope.ident, 0.0)
            if spent > 0:
                await self.store.spend_seed(counter.key, spent, counter.expires_at)
                seeded += 1
        return seeded

    async def restore_alert(self, kind: str, ident: str, period: str, label: str) -> None:
        """Remember an alert already sent this period (from the alerts table) so it is not sent twice."""
        key = counter_key(ident, period, label)
        await self.store.once(f"alert:{kind}:{key}", self.clock() + 40 * 86_400.0)

    async def status(self, scopes: BudgetScopes) -> list[dict[str, object]]:
        """Every budget counter of the current periods: spent, reserved, limit, reset time."""
        now = self.clock()
        out: list[dict[str, object]] = []
        for counter in self.counters(scopes.all_scopes(), now):
            state = await self.store.spend_state(counter.key, now)
            out.append(
                {
                    "budget": counter.scope.ident,
                    "period": counter.period,
                    "label": counter.label,
                    "limit_usd": counter.limit,
                    "spent_usd": round(state.spent, 6),
                    "reserved_usd": round(state.reserved, 6),
                    "resets_at": counter.end.isoformat(),
                }
            )
        return out
