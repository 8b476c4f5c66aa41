"""``/admin/reports``: the administrators' questions, the same functions and defaults as
``mcp-gateway report`` (`gateway_app.cli_reports`), so an answer here is the CLI's ``--json``."""

from __future__ import annotations

from typing import Any

from gateway_app.admin_api.operation import Call, Operation, Param, Reply
from gateway_app.admin_api.params import filter_param, now_of, period_of, period_params, text
from gateway_app.cli_reports import DEFAULT_PERIOD, KEY_ORDERS
from gateway_app.queries import budget_status, limits, spend, team_tools, to_plain, top_keys
from gateway_app.queries.limits import LimitsGrouping
from gateway_app.queries.spend import SpendDimension

SPEND_BY: dict[str, SpendDimension] = {"team": "team", "key": "key", "model": "model", "provider": "provider"}
LIMITS_BY: dict[str, LimitsGrouping] = {"key": "key", "team": "team"}
MAX_KEYS = 10_000


async def top_keys_report(call: Call) -> Reply:
    period, order = period_of(call, DEFAULT_PERIOD), call.choice("by", KEY_ORDERS, "model-calls")
    team, limit, engine = text(call, "team"), call.integer("limit", 10, 0, MAX_KEYS), call.runtime.engine
    report = await call.db(lambda: top_keys(engine, period, order=order, team=team, limit=limit or None))
    return Reply(to_plain(report))


async def tools_report(call: Call) -> Reply:
    period, engine = period_of(call, DEFAULT_PERIOD), call.runtime.engine
    team, key, client = text(call, "team"), text(call, "key"), text(call, "client")
    report = await call.db(lambda: team_tools(engine, period, team=team, key=key, client=client))
    return Reply(to_plain(report))


async def spend_report(call: Call) -> Reply:
    period, by = period_of(call, DEFAULT_PERIOD), call.choice("by", SPEND_BY, "team")
    team, key, daily, engine = text(call, "team"), text(call, "key"), call.flag("daily"), call.runtime.engine
    report = await call.db(lambda: spend(engine, period, by=by, team=team, key=key, daily=daily))
    return Reply(to_plain(report))


async def limits_report(call: Call) -> Reply:
    period, by = period_of(call, DEFAULT_PERIOD), call.choice("by", LIMITS_BY, "key")
    team, key, engine = text(call, "team"), text(call, "key"), call.runtime.engine
    report = await call.db(lambda: limits(engine, period, by=by, team=team, key=key))
    return Reply(to_plain(report))


async def budgets_report(call: Call) -> Reply:
    """The policy in force's budgets (database keys' own included), spent as the ledger records it."""
    now, scopes, engine = now_of(call), call.runtime.state.current.budget_scopes, call.runtime.engine
    return Reply(to_plain(await call.db(lambda: budget_status(engine, scopes, now=now))))


def _by(choices: Any, default: str, what: str) -> Param:
    return Param("by", {"type": "string", "enum": list(choices), "default": default}, what)


_PERIOD = period_params(DEFAULT_PERIOD)
_TEAM = filter_param("team", "Only this team.")
_KEY = filter_param("key", "Only this virtual key.")

OPERATIONS = (
    Operation(
        "GET",
        "/admin/reports/top-keys",
        top_keys_report,
        "The keys with the most model calls, tool calls or cost",
        "reports",
        params=(
            _by(KEY_ORDERS, "model-calls", "What ranks them."),
            _TEAM,
            Param("limit", {"type": "integer", "minimum": 0, "maximum": MAX_KEYS}, "How many (0: all)."),
            *_PERIOD,
        ),
        responses={200: "As `mcp-gateway report top-keys --json`."},
    ),
    Operation(
        "GET",
        "/admin/reports/tools",
        tools_report,
        "The tools called: calls, refusals, distinct keys, last use",
        "reports",
        params=(
            _TEAM,
            _KEY,
            filter_param("client", "Only calls from this MCP client (claude-code)."),
            *_PERIOD,
        ),
        responses={200: "As `mcp-gateway report tools --json`."},
    ),
    Operation(
        "GET",
        "/admin/reports/spend",
        spend_report,
        "What model requests cost, per team, key, model or provider",
        "reports",
        params=(
            _by(SPEND_BY, "team", "Group by."),
            _TEAM,
            _KEY,
            Param("daily", {"type": "boolean"}, "Also each UTC day's spend per group."),
            *_PERIOD,
        ),
        responses={200: "As `mcp-gateway report spend --json`."},
    ),
    Operation(
        "GET",
        "/admin/reports/limits",
        limits_report,
        "Who was refused by a rate limit or a budget, how often, by which limit",
        "reports",
        params=(_by(LIMITS_BY, "key", "Per key or per team."), _TEAM, _KEY, *_PERIOD),
        responses={200: "As `mcp-gateway report limits --json`."},
    ),
    Operation(
        "GET",
        "/admin/reports/budgets",
        budgets_report,
        "Each budget of the policy in force: spent, limit, percent, reset, alerts",
        "reports",
        params=(Param("now", {"type": "string"}, "Take this ISO timestamp as now."),),
        responses={200: "As `mcp-gateway report budgets --json`."},
    ),
)
