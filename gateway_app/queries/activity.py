"""Who does what: the most active keys of a period, and the tools a team uses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, case, func, select, union_all

from gateway_app.queries.base import Database, as_utc, connect, group_keys, within
from gateway_app.queries.period import Period
from gateway_app.queries.rollup_reads import Split, larger, latest, on_days, on_months, split
from gateway_common.rollups import ToolCallsDaily, ToolKeysMonthly, ToolUsageDaily, UsageDaily
from llm_proxy.ledger import ModelRequest
from mcp_gateway.audit.models import ToolCall
from policies.outcomes import REFUSALS, Outcome

_T = ToolCall.__table__.c  # type: ignore[attr-defined]
_M = ModelRequest.__table__.c  # type: ignore[attr-defined]
_U = UsageDaily.__table__.c  # type: ignore[attr-defined]
_D = ToolCallsDaily.__table__.c  # type: ignore[attr-defined]
_G = ToolUsageDaily.__table__.c  # type: ignore[attr-defined]
_K = ToolKeysMonthly.__table__.c  # type: ignore[attr-defined]

KeyOrder = Literal["model_calls", "tool_calls", "cost"]
KEY_ORDERS: tuple[KeyOrder, ...] = ("model_calls", "tool_calls", "cost")


@dataclass(frozen=True, slots=True)
class KeyActivity:
    """One key's use in a period: model requests (refused ones included) and their cost, tool calls."""

    key_id: str
    key_name: str | None
    team: str | None
    model_calls: int
    cost_usd: float
    tool_calls: int


@dataclass(frozen=True, slots=True)
class TopKeys:
    period: Period
    order: KeyOrder
    rows: list[KeyActivity]


@dataclass(frozen=True, slots=True)
class ToolUsage:
    """One tool's use in a period: every call (``ok`` answered, ``refused`` by the gateway: denied,
    rate limited, invalid), the keys that called it, the last call."""

    server: str
    tool: str
    calls: int
    ok: int
    refused: int
    keys: int
    last_used: datetime


@dataclass(frozen=True, slots=True)
class ToolsReport:
    period: Period
    team: str | None
    client: str | None
    rows: list[ToolUsage]


def top_keys(
    database: Database,
    period: Period,
    *,
    order: KeyOrder = "model_calls",
    team: str | None = None,
    limit: int | None = 10,
) -> TopKeys:
    """The keys with the most model calls (or tool calls, or cost) in ``period``, most first; ties
    by key id."""
    if order not in KEY_ORDERS:
        raise ValueError(f"order is one of {', '.join(KEY_ORDERS)}, not {order!r}")
    parts = split(period)
    models = [
        within(select(_M.key_id, func.max(_M.team), func.count(), func.sum(_M.cost_usd)), _M.timestamp, edge)
        .where(*_team(_M, team))
        .group_by(*group_keys(_M.key_id))
        for edge in parts.edges
    ]
    tools = [
        within(select(_T.key_id, func.max(_T.team), func.count()), _T.timestamp, edge)
        .where(*_team(_T, team))
        .group_by(*group_keys(_T.key_id))
        for edge in parts.edges
    ]
    if parts.days is not None:
        models.append(
            on_days(
                select(_U.key_id, func.max(_U.team), func.sum(_U.requests), func.sum(_U.cost_usd)),
                _U.day,
                parts.days,
            )
            .where(*_team(_U, team))
            .group_by(_U.key_id)
        )
        tools.append(
            on_days(select(_D.key_id, func.max(_D.team), func.sum(_D.calls)), _D.day, parts.days)
            .where(*_team(_D, team))
            .group_by(_D.key_id)
        )
    model_calls: dict[str, tuple[str | None, int, float]] = {}
    tool_calls: dict[str, tuple[str | None, int]] = {}
    with connect(database) as connection:
        for stmt in models:
            for key_id, key_team, calls, cost in connection.execute(stmt):
                seen_team, seen_calls, seen_cost = model_calls.get(key_id, (None, 0, 0.0))
                model_calls[key_id] = (
                    larger(seen_team, key_team),
                    seen_calls + int(calls),
                    seen_cost + float(cost or 0.0),
                )
        for stmt in tools:
            for key_id, key_team, calls in connection.execute(stmt):
                seen_team, seen_calls = tool_calls.get(key_id, (None, 0))
                tool_calls[key_id] = (larger(seen_team, key_team), seen_calls + int(calls))
        found = []
        for key_id in model_calls.keys() | tool_calls.keys():
            key_team, calls, cost = model_calls.get(key_id, (None, 0, 0.0))
            tool_team, tools_called = tool_calls.get(key_id, (None, 0))
            found.append(KeyActivity(key_id, None, key_team or tool_team, calls, cost, tools_called))
        found.sort(key=lambda row: (-getattr(row, _METRIC[order]), row.key_id))
        rows = found[:limit] if limit is not None else found
        names = _key_names(connection, [row.key_id for row in rows])
    return TopKeys(period, order, [dataclasses.replace(row, key_name=names.get(row.key_id)) for row in rows])


def _team(columns: Any, team: str | None) -> list[Any]:
    return [] if team is None else [columns.team == team]


def _equal(columns: Any, **values: str | None) -> list[Any]:
    return [columns[name] == value for name, value in values.items() if value is not None]


def _add(
    totals: dict[tuple[str, str], list[Any]], tool: tuple[str, str], calls: Any, ok: Any, no: Any, last: Any
) -> None:
    seen = totals.setdefault(tool, [0, 0, 0, last])
    seen[0] += calls
    seen[1] += ok
    seen[2] += no
    seen[3] = latest(seen[3], last)


def _key_names(connection: Connection, key_ids: list[str]) -> dict[str, str]:
    """Each key's name as its latest row recorded it: one short index lookup per key shown, a few
    hundred of them per statement (a dashboard may show every key)."""
    names: dict[str, str] = {}
    for columns in (_M, _T):
        missing = [key_id for key_id in key_ids if key_id not in names]
        for start in range(0, len(missing), _LOOKUPS):
            newest = [
                select(columns.key_id, columns.key_name)
                .where(columns.key_id == key_id)
                .order_by(columns.timestamp.desc())
                .limit(1)
                .subquery()
                for key_id in missing[start : start + _LOOKUPS]
            ]
            lookups = (
                union_all(*(select(*sub.c) for sub in newest)) if len(newest) > 1 else select(*newest[0].c)
            )
            for key_id, name in connection.execute(lookups):
                if name is not None:
                    names[key_id] = name
    return names


_LOOKUPS = 200
"""Lookups per statement (SQLite allows 500 SELECTs in one)."""
_METRIC = {"model_calls": "model_calls", "tool_calls": "tool_calls", "cost": "cost_usd"}


def team_tools(
    database: Database,
    period: Period,
    *,
    team: str | None = None,
    key: str | None = None,
    client: str | None = None,
) -> ToolsReport:
    """The tools called in ``period`` (by ``team``, ``key``, from ``client`` when given), most called
    first. Calls to names that are no tool at all (denied, no server) are left out."""
    refused = [outcome.value for outcome in REFUSALS]
    # One key's calls come from its rows (an index on key and time); the rollups have no key.
    parts = split(period) if key is None else Split(None, (period,))
    totals: dict[tuple[str, str], list[Any]] = {}
    keys: dict[tuple[str, str], set[str]] = {}
    with connect(database) as connection:
        for edge in parts.edges:
            stmt = select(
                _T.server,
                _T.tool,
                _T.key_id,
                func.count(),
                func.sum(case((_T.status == Outcome.OK.value, 1), else_=0)),
                func.sum(case((_T.status.in_(refused), 1), else_=0)),
                func.max(_T.timestamp),
            ).where(_T.tool.is_not(None), *_equal(_T, team=team, key_id=key, client_name=client))
            # Per key too, and the keys counted here: COUNT(DISTINCT) would make PostgreSQL sort every row.
            stmt = within(stmt, _T.timestamp, edge).group_by(*group_keys(_T.server, _T.tool, _T.key_id))
            for server, tool, key_id, calls, ok, no, last in connection.execute(stmt):
                _add(totals, (server, tool), calls, ok, no, last)
                keys.setdefault((server, tool), set()).add(key_id)
        if parts.days is not None:
            by_tool = select(
                _G.server,
                _G.tool,
                func.sum(_G.calls),
                func.sum(_G.ok),
                func.sum(_G.refused),
                func.max(_G.last_at),
            ).where(*_equal(_G, team=team, client_name=client))
            for server, tool, calls, ok, no, last in connection.execute(
                on_days(by_tool, _G.day, parts.days).group_by(_G.server, _G.tool)
            ):
                _add(totals, (server, tool), calls, ok, no, last)
            who = select(_K.server, _K.tool, _K.key_id).where(*_equal(_K, team=team, client_name=client))
            for server, tool, key_id in connection.execute(
                on_months(who, _K.month, _K.days, parts.days).distinct()
            ):
                keys.setdefault((server, tool), set()).add(key_id)
    rows = [
        ToolUsage(server, tool, int(calls), int(ok), int(no), len(keys.get((server, tool), ())), as_utc(last))
        for (server, tool), (calls, ok, no, last) in totals.items()
    ]
    rows.sort(key=lambda row: (-row.calls, row.server, row.tool))
    return ToolsReport(period, team, client, rows)
