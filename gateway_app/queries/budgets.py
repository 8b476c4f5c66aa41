"""Each budget of a policy in its current period: spent (from the ledger), limit, percent, when it
resets, and the alerts it has raised (the `budget_alerts` table).

The spend is what the ledger holds, charged the way the gateway charges budgets
(`BudgetScopes.charged_by`: the org, the request's team, key and provider), so it equals what a
gateway restarted now would rebuild its counters from. Requests still in flight (reserved, not yet
settled) are not in it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, null, select

from gateway_app.queries.base import Database, as_utc, connect, day_of, group_keys, within
from gateway_app.queries.period import Period
from gateway_app.queries.rollup_reads import on_days, split
from gateway_common.rollups import SpendDaily, UsageDaily
from llm_proxy.ledger import BudgetAlertRecord, ModelRequest
from policies.budgeting import BudgetScopes, SpendRow, period_bounds, period_label

_M = ModelRequest.__table__.c  # type: ignore[attr-defined]
_A = BudgetAlertRecord.__table__.c  # type: ignore[attr-defined]
_U = UsageDaily.__table__.c  # type: ignore[attr-defined]
_S = SpendDaily.__table__.c  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    kind: str
    """``threshold`` or ``exhausted``."""
    threshold: float
    spent_usd: float
    at: datetime


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: str
    """``org``, ``team:<name>``, ``key:<id>`` or ``provider:<name>``."""
    period: str
    """``daily``, ``weekly`` or ``monthly``."""
    label: str
    """The current period: ``2026-11-27``, ``2026-W48`` or ``2026-11``."""
    limit_usd: float
    spent_usd: float
    percent: float | None
    """Spent as a percentage of the limit (may pass 100: the last request admitted can overshoot);
    None for a limit of 0."""
    starts_at: datetime
    resets_at: datetime
    alert_threshold: float | None
    alerts: list[RaisedAlert]
    """Alerts this budget raised in the current period, oldest first."""


@dataclass(frozen=True, slots=True)
class BudgetsReport:
    at: datetime
    """The moment whose periods are reported."""
    rows: list[BudgetStatus]
    """In the policy's order: org, teams, keys, providers; each daily, weekly, monthly."""


def budget_status(database: Database, scopes: BudgetScopes, *, now: datetime) -> BudgetsReport:
    """Every budget of ``scopes`` (`PolicySnapshot.budget_scopes`, or ``BudgetScopes(policy)``) in
    the period containing ``now``."""
    now = as_utc(now)
    counters = [
        (scope, period, limit, *period_bounds(period, now.timestamp()))
        for scope in scopes.all_scopes()
        for period, limit in scope.limits
    ]
    if not counters:
        return BudgetsReport(now, [])
    earliest = min(start for *_, start, _end in counters)
    latest = max(end for *_, end in counters)
    # Every period starts at a UTC midnight: whole days, from the rollups (edges only if not).
    parts = split(Period(earliest, latest, "budgets"))
    day = day_of(_M.timestamp)
    every = frozenset({"org", "team", "key", "provider"})
    statements = [
        (
            within(select(_M.key_id, _M.team, _M.provider, day, func.sum(_M.cost_usd)), _M.timestamp, edge)
            .where(_M.cost_usd > 0)
            .group_by(*group_keys(_M.key_id, _M.team, _M.provider), day),
            every,
        )
        for edge in parts.edges
    ]
    if parts.days is not None:
        # The org's, teams' and providers' budgets from spend without keys (a few rows a day); the
        # keys' budgets from those keys' rows.
        shared = select(null(), _S.team, _S.provider, _S.day, func.sum(_S.cost_usd)).where(_S.cost_usd > 0)
        shared = on_days(shared, _S.day, parts.days).group_by(_S.team, _S.provider, _S.day)
        statements.append((shared, frozenset({"org", "team", "provider"})))
        key_ids = sorted({scope.name for scope in scopes.all_scopes() if scope.kind == "key"})
        if key_ids:
            own = select(_U.key_id, _U.team, _U.provider, _U.day, func.sum(_U.cost_usd))
            own = own.where(_U.cost_usd > 0, _U.key_id.in_(key_ids))
            own = on_days(own, _U.day, parts.days).group_by(_U.key_id, _U.team, _U.provider, _U.day)
            statements.append((own, frozenset({"key"})))
    labels = {period_label(period, start) for _, period, _, start, _ in counters}
    alerts_stmt = (
        select(_A.budget, _A.period, _A.period_label, _A.kind, _A.threshold, _A.spent_usd, _A.timestamp)
        .where(_A.period_label.in_(sorted(labels)))
        .order_by(_A.timestamp)
    )
    # Spend per budget and day; every period starts at a UTC midnight, so days add up exactly.
    daily: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    raised: defaultdict[tuple[str, str, str], list[RaisedAlert]] = defaultdict(list)
    with connect(database) as connection:
        for stmt, kinds in statements:
            for key_id, team, provider, when, cost in connection.execute(stmt):
                for scope in scopes.charged_by(SpendRow(key_id or "", team, provider, float(cost))):
                    if scope.kind in kinds:
                        daily[scope.ident][str(when)] += float(cost)
        for budget, period, label, kind, threshold, spent, at in connection.execute(alerts_stmt):
            raised[(budget, period, label)].append(RaisedAlert(kind, threshold, spent, as_utc(at)))
    rows = []
    for scope, period, limit, start, end in counters:
        first, last = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")
        spent = sum(cost for when, cost in daily[scope.ident].items() if first <= when < last)
        label = period_label(period, start)
        rows.append(
            BudgetStatus(
                budget=scope.ident,
                period=period,
                label=label,
                limit_usd=limit,
                spent_usd=round(spent, 6),
                percent=round(100.0 * spent / limit, 2) if limit > 0 else None,
                starts_at=start,
                resets_at=end,
                alert_threshold=scope.alert_threshold,
                alerts=raised.get((scope.ident, period, label), []),
            )
        )
    return BudgetsReport(now, rows)
