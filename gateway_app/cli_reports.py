"""``mcp-gateway report``: the administrators' questions, one command each, read only.

    mcp-gateway report top-keys --week                  which keys made the most model calls
    mcp-gateway report tools --team frontend --client claude-code
    mcp-gateway report spend --by team --month last     what model requests cost, per team
    mcp-gateway report limits                           who was refused by a rate limit or budget
    mcp-gateway report budgets --config gateway.yaml    each budget: spent, limit, percent, reset

`register` is the one hook `gateway_app.cli.build_parser` calls: it adds ``audit`` and ``report``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway_app import cli_common as common
from gateway_app.cli_audit import register_audit
from gateway_app.cli_common import Column, cell, usd
from gateway_app.queries import (
    BudgetStatus,
    DailySpend,
    KeyActivity,
    LimitHit,
    SpendRow,
    ToolUsage,
    budget_status,
    limits,
    spend,
    team_tools,
    top_keys,
)
from gateway_app.queries.activity import KeyOrder

DEFAULT_PERIOD = "30d"
KEY_ORDERS: dict[str, KeyOrder] = {"model-calls": "model_calls", "tool-calls": "tool_calls", "cost": "cost"}


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return int(text)


def cmd_top_keys(args: argparse.Namespace) -> int:
    period = common.period_of(args, DEFAULT_PERIOD)
    engine = common.engine_of(args)
    try:
        order = KEY_ORDERS[args.by]
        report = top_keys(engine, period, order=order, team=args.team, limit=args.limit or None)
    finally:
        engine.dispose()
    columns = [
        Column("KEY", lambda r: r.key_id),
        Column("NAME", lambda r: r.key_name),
        Column("TEAM", lambda r: r.team),
        Column("MODEL CALLS", lambda r: r.model_calls, numeric=True),
        Column("COST", lambda r: usd(r.cost_usd), numeric=True),
        Column("TOOL CALLS", lambda r: r.tool_calls, numeric=True),
    ]
    title = f"Top keys by {args.by.replace('-', ' ')}, {period.label}"
    common.emit(report, report.rows, KeyActivity, columns, args.output, title=title, empty="no activity")
    return 0


def cmd_tools(args: argparse.Namespace) -> int:
    period = common.period_of(args, DEFAULT_PERIOD)
    engine = common.engine_of(args)
    try:
        report = team_tools(engine, period, team=args.team, key=args.key, client=args.client)
    finally:
        engine.dispose()
    columns = [
        Column("SERVER", lambda r: r.server),
        Column("TOOL", lambda r: r.tool),
        Column("CALLS", lambda r: r.calls, numeric=True),
        Column("OK", lambda r: r.ok, numeric=True),
        Column("REFUSED", lambda r: r.refused, numeric=True),
        Column("KEYS", lambda r: r.keys, numeric=True),
        Column("LAST USED (UTC)", lambda r: r.last_used),
    ]
    who = " ".join(f"{name} {value}" for name, value in (("team", args.team), ("key", args.key)) if value)
    source = f" from {args.client}" if args.client else ""
    title = f"Tools used{' by ' + who if who else ''}{source}, {period.label}"
    common.emit(report, report.rows, ToolUsage, columns, args.output, title=title, empty="no tool calls")
    return 0


def cmd_spend(args: argparse.Namespace) -> int:
    period = common.period_of(args, DEFAULT_PERIOD)
    engine = common.engine_of(args)
    try:
        report = spend(engine, period, by=args.by, team=args.team, key=args.key, daily=args.daily)
    finally:
        engine.dispose()
    group = args.by.upper()
    title = f"Spend by {args.by}, {period.label}: {usd(report.total_usd)}"
    if args.daily and report.daily is not None and args.output != "table":
        common.emit(report, report.daily, DailySpend, [], args.output)
        return 0
    columns = [
        Column(group, lambda r: r.group),
        Column("REQUESTS", lambda r: r.requests, numeric=True),
        Column("INPUT TOKENS", lambda r: r.input_tokens, numeric=True),
        Column("OUTPUT TOKENS", lambda r: r.output_tokens, numeric=True),
        Column("CACHE READ", lambda r: r.cache_read_tokens, numeric=True),
        Column("CACHE WRITE", lambda r: r.cache_write_tokens, numeric=True),
        Column("COST", lambda r: usd(r.cost_usd), numeric=True),
    ]
    common.emit(report, report.rows, SpendRow, columns, args.output, title=title, empty="no model requests")
    if args.daily and report.daily and args.output == "table":
        daily = [
            Column("DAY (UTC)", lambda r: r.day),
            Column(group, lambda r: r.group),
            Column("REQUESTS", lambda r: r.requests, numeric=True),
            Column("COST", lambda r: usd(r.cost_usd), numeric=True),
        ]
        print()
        common.print_table(report.daily, daily, title=f"Daily spend by {args.by}")
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    period = common.period_of(args, DEFAULT_PERIOD)
    engine = common.engine_of(args)
    try:
        report = limits(engine, period, by=args.by, team=args.team, key=args.key)
    finally:
        engine.dispose()
    columns = [
        *([Column("KEY", lambda r: r.key_id)] if args.by == "key" else []),
        Column("TEAM", lambda r: r.team),
        Column("ON", lambda r: r.surface),
        Column("STATUS", lambda r: r.status),
        Column("REFUSED BY", lambda r: r.blocked_by),
        Column("TIMES", lambda r: r.refusals, numeric=True),
        Column("FIRST (UTC)", lambda r: r.first),
        Column("LAST (UTC)", lambda r: r.last),
    ]
    title = f"Refusals by rate limits and budgets, per {args.by}, {period.label}"
    common.emit(report, report.rows, LimitHit, columns, args.output, title=title, empty="no refusals")
    return 0


def _alerts(row: BudgetStatus) -> str:
    return ", ".join(f"{alert.kind} {cell(alert.at)}" for alert in row.alerts) or "-"


def cmd_budgets(args: argparse.Namespace) -> int:
    from gateway_app.cli_base import load_policy_or_exit
    from policies.budgeting import BudgetScopes

    if args.config is None:
        print(
            "mcp-gateway: report budgets needs --config FILE: the budgets are the policy's", file=sys.stderr
        )
        return 2
    policy = load_policy_or_exit(args.config).policy
    engine = common.engine_of(args, policy)
    try:
        report = budget_status(engine, BudgetScopes(policy), now=common.now_of(args))
    finally:
        engine.dispose()
    columns = [
        Column("BUDGET", lambda r: r.budget),
        Column("PERIOD", lambda r: r.period),
        Column("CURRENT", lambda r: r.label),
        Column("SPENT", lambda r: usd(r.spent_usd), numeric=True),
        Column("LIMIT", lambda r: usd(r.limit_usd), numeric=True),
        Column("USED", lambda r: None if r.percent is None else f"{r.percent:.1f} %", numeric=True),
        Column("RESETS (UTC)", lambda r: r.resets_at),
        Column("ALERTS", _alerts),
    ]
    common.emit(
        report,
        report.rows,
        BudgetStatus,
        columns,
        args.output,
        title=f"Budgets at {cell(report.at)} UTC (spent: the ledger's rows)",
        empty="the policy defines no budgets",
    )
    return 0


def register_reports(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="reports: top keys, tools used, spend, limits hit, budgets",
        description="Answers to the administrators' questions, straight from the database (read only).",
    )
    reports = report.add_subparsers(dest="report", required=True, metavar="REPORT")

    def add(name: str, text: str, command: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = reports.add_parser(name, help=text, description=text)
        parser.set_defaults(func=command)
        return parser

    keys = add(
        "top-keys", "the keys (developers) with the most model calls, tool calls or cost", cmd_top_keys
    )
    keys.add_argument(
        "--by", choices=list(KEY_ORDERS), default="model-calls", help="what ranks them (default model-calls)"
    )
    keys.add_argument("--team", help="only this team's keys")
    keys.add_argument(
        "--limit", type=_count, default=10, metavar="N", help="how many keys (default 10; 0: all)"
    )

    tools = add("tools", "the tools called: calls, refusals, distinct keys, last use", cmd_tools)
    tools.add_argument("--team", help="only this team's calls")
    tools.add_argument("--key", metavar="ID", help="only this key's calls")
    tools.add_argument("--client", help="only calls from this MCP client (clientInfo name: claude-code)")

    cost = add("spend", "what model requests cost, per team, key, model or provider", cmd_spend)
    cost.add_argument(
        "--by", choices=["team", "key", "model", "provider"], default="team", help="group by (default team)"
    )
    cost.add_argument("--team", help="only this team's requests")
    cost.add_argument("--key", metavar="ID", help="only this key's requests")
    cost.add_argument(
        "--daily", action="store_true", help="also each UTC day's spend per group (--csv: only those rows)"
    )

    hits = add("limits", "who was refused by a rate limit or a budget, how often, by which limit", cmd_limits)
    hits.add_argument(
        "--by", choices=["key", "team"], default="key", help="per key or per team (default key)"
    )
    hits.add_argument("--team", help="only this team")
    hits.add_argument("--key", metavar="ID", help="only this key")

    for parser in (keys, tools, cost, hits):
        common.add_period_flags(parser, DEFAULT_PERIOD)
        common.add_output_flags(parser)
        common.add_database_flags(parser)

    budgets = add(
        "budgets", "each budget of the policy: spent this period, limit, percent, reset, alerts", cmd_budgets
    )
    common.add_now_flag(budgets)
    common.add_output_flags(budgets)
    common.add_database_flags(budgets, budgets=True)


def register(sub: Any) -> argparse.ArgumentParser:
    """Add ``audit`` and ``report`` to the ``mcp-gateway`` parser (the hook in `gateway_app.cli`);
    returns the ``audit`` parser, which other commands extend (``audit prune``)."""
    audit = register_audit(sub)
    register_reports(sub)
    return audit
