"""Overview, Spend, Budgets and Limits: the figures `gateway_app.queries` answers, as pages.

Every figure comes from the same query the CLI's ``report`` uses, run in a worker thread; cells
carry the exact number in ``data-value`` so tests (and curious people) can compare them with
``mcp-gateway report ... --json``.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from datetime import date

from starlette.responses import Response

from gateway_app.queries import (
    ToolCallFilter,
    budget_status,
    count_tool_calls,
    limits,
    spend,
)
from gateway_app.queries.spend import DIMENSIONS, SpendDimension
from gateway_app.ui import periods
from gateway_app.ui.charts import BudgetLine, days_between, spend_chart
from gateway_app.ui.web import View
from policies.budgeting import BudgetScope
from policies.outcomes import REFUSALS

PERIOD_WORDS = ("since", "until", "month", "week")


def _period_args(view: View) -> dict[str, str | None]:
    return {name: view.arg(name) for name in PERIOD_WORDS}


async def overview(view: View) -> Response:
    now = view.now
    day = periods.today(now)
    engine = view.engine
    budgets, requests, calls, refused = await asyncio.gather(
        view.db(budget_status, engine, view.snapshot.budget_scopes, now=now),
        view.db(spend, engine, day, by="team"),
        view.db(count_tool_calls, engine, ToolCallFilter(period=day)),
        view.db(limits, engine, day, by="team"),
    )
    shown = [row for row in budgets.rows if row.budget == "org" or row.budget.startswith("team:")]
    by_team: Counter[str | None] = Counter()
    by_status: Counter[str] = Counter()
    refusal_values = {outcome.value for outcome in REFUSALS}
    for row in calls:
        by_team[row.team] += row.calls
        if row.status in refusal_values:
            by_status[row.status] += row.calls
    model_refusals: Counter[str] = Counter()
    for hit in refused.rows:
        if hit.surface == "models":
            model_refusals[hit.status] += hit.refusals
    upstreams = view.runtime.hub.status()
    return view.render(
        "overview.html",
        active="overview",
        day=day,
        since=periods.since_of(day),
        budgets=shown,
        requests=requests,
        model_requests=sum(row.requests for row in requests.rows),
        tool_calls=sum(by_team.values()),
        tool_calls_by_team=sorted(by_team.items(), key=lambda item: (-item[1], item[0] or "")),
        tool_refusals=sorted(by_status.items()),
        model_refusals=sorted(model_refusals.items()),
        upstreams=upstreams,
        ready=sum(1 for u in upstreams if u["state"] == "ready"),
        enabled=sum(1 for u in upstreams if u["state"] != "disabled"),
    )


_PERIOD_ORDER = {"daily": 0, "weekly": 1, "monthly": 2}


def budget_line(scopes: list[BudgetScope], ident: str) -> BudgetLine | None:
    """The budget drawn over a chart of ``ident``'s spend: its daily limit if it has one, else its
    weekly, else its monthly."""
    for scope in scopes:
        if scope.ident == ident and scope.limits:
            period, limit = min(scope.limits, key=lambda pair: _PERIOD_ORDER.get(pair[0], 3))
            return BudgetLine(f"{ident} {period}", period, limit, scope.alert_threshold)
    return None


async def spend_page(view: View) -> Response:
    wanted = view.arg("by") or "team"
    by: SpendDimension = wanted if wanted in DIMENSIONS else "team"
    team, key = view.arg("team"), view.arg("key")
    period, error = periods.requested(view.now, _period_args(view), "30d")
    report = await view.db(spend, view.engine, period, by=by, team=team, key=key, daily=True)
    per_day: defaultdict[date, float] = defaultdict(float)
    for row in report.daily or []:
        per_day[date.fromisoformat(row.day)] += row.cost_usd
    first, last = periods.days_of(period, view.now, min(per_day) if per_day else None)
    ident = f"key:{key}" if key else f"team:{team}" if team else "org"
    line = budget_line(view.snapshot.budget_scopes.all_scopes(), ident)
    chart = spend_chart(days_between(first, last), per_day, line)
    return view.render(
        "spend.html",
        status=400 if error else 200,
        active="spend",
        error=error,
        report=report,
        by=by,
        dimensions=list(DIMENSIONS),
        team=team,
        key=key,
        args=_period_args(view),
        period=period,
        since=periods.since_of(period),
        chart=chart,
        line=line,
        ident=ident,
    )


async def budgets_page(view: View) -> Response:
    report = await view.db(budget_status, view.engine, view.snapshot.budget_scopes, now=view.now)
    return view.render("budgets.html", active="budgets", report=report)


async def limits_page(view: View) -> Response:
    by = "team" if view.arg("by") == "team" else "key"
    team, key = view.arg("team"), view.arg("key")
    period, error = periods.requested(view.now, _period_args(view), "30d")
    report = await view.db(limits, view.engine, period, by=by, team=team, key=key)
    return view.render(
        "limits.html",
        status=400 if error else 200,
        active="limits",
        error=error,
        report=report,
        by=by,
        team=team,
        key=key,
        args=_period_args(view),
        since=periods.since_of(period),
    )
