"""Who hits rate limits and budgets: refusals (``rate_limited``, ``budget_exceeded``) of tool calls
and model requests, per key (or team) and the limit that refused, with how often and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select

from gateway_app.queries.base import Database, as_utc, connect, group_keys, within
from gateway_app.queries.period import Period
from gateway_app.queries.rollup_reads import earliest, latest, on_days, split
from gateway_common.rollups import RefusalsDaily
from llm_proxy.ledger import ModelRequest
from mcp_gateway.audit.models import ToolCall
from policies.outcomes import Outcome

_T = ToolCall.__table__.c  # type: ignore[attr-defined]
_M = ModelRequest.__table__.c  # type: ignore[attr-defined]
_R = RefusalsDaily.__table__.c  # type: ignore[attr-defined]

LIMIT_OUTCOMES = (Outcome.RATE_LIMITED.value, Outcome.BUDGET_EXCEEDED.value)
LimitsGrouping = Literal["key", "team"]
Surface = Literal["tools", "models"]


@dataclass(frozen=True, slots=True)
class LimitHit:
    """How often one key (or team) was refused by one limit in the period.

    ``blocked_by`` names the limit (``rate_limit:key:alice:requests_per_minute``,
    ``budget:team:backend:monthly``; empty on rows from before it was recorded); ``surface`` is
    ``tools`` (tool calls on /mcp) or ``models`` (model requests)."""

    key_id: str | None
    """None when grouped by team."""
    team: str | None
    surface: Surface
    status: str
    blocked_by: str | None
    refusals: int
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class LimitsReport:
    period: Period
    by: LimitsGrouping
    rows: list[LimitHit]
    """Most refusals first; ties by key (or team), then the limit."""


def _query(columns: Any, by: LimitsGrouping, team: str | None, key: str | None) -> Any:
    grouping = [columns.team] if by == "team" else [columns.key_id, columns.team]
    stmt = select(
        *grouping,
        columns.status,
        columns.blocked_by,
        func.count(),
        func.min(columns.timestamp),
        func.max(columns.timestamp),
    ).where(columns.status.in_(LIMIT_OUTCOMES))
    for column, value in ((columns.team, team), (columns.key_id, key)):
        if value is not None:
            stmt = stmt.where(column == value)
    return stmt.group_by(*group_keys(*grouping, columns.status, columns.blocked_by))


def limits(
    database: Database,
    period: Period,
    *,
    by: LimitsGrouping = "key",
    team: str | None = None,
    key: str | None = None,
) -> LimitsReport:
    """Refusals by a rate limit or a budget in ``period``, per key (or team), surface and limit."""
    if by not in ("key", "team"):
        raise ValueError(f"limits are grouped by key or team, not {by!r}")
    parts = split(period)
    found: dict[tuple[Any, ...], list[Any]] = {}
    with connect(database) as connection:
        surfaces: tuple[tuple[Any, Surface], ...] = ((_T, "tools"), (_M, "models"))
        for columns, surface in surfaces:
            statements = [
                within(_query(columns, by, team, key), columns.timestamp, edge) for edge in parts.edges
            ]
            if parts.days is not None:
                statements.append(_rolled(surface, by, team, key, parts.days))
            for stmt in statements:
                for row in connection.execute(stmt):
                    values = list(row) if by == "key" else [None, *row]
                    key_id, row_team, status, blocked_by, count, first, last = values
                    seen = found.setdefault((key_id, row_team, surface, status, blocked_by), [0, first, last])
                    seen[0] += int(count)
                    seen[1], seen[2] = earliest(seen[1], first), latest(seen[2], last)
    rows = [
        LimitHit(key_id, row_team, surface, status, blocked_by, count, as_utc(first), as_utc(last))
        for (key_id, row_team, surface, status, blocked_by), (count, first, last) in found.items()
    ]
    rows.sort(key=lambda r: (-r.refusals, r.key_id or "", r.team or "", r.surface, r.blocked_by or ""))
    return LimitsReport(period, by, rows)


def _rolled(
    surface: Surface,
    by: LimitsGrouping,
    team: str | None,
    key: str | None,
    days: tuple[str | None, str | None],
) -> Any:
    """`_query` of the rollups' whole days."""
    grouping = [_R.team] if by == "team" else [_R.key_id, _R.team]
    stmt = select(
        *grouping,
        _R.status,
        _R.blocked_by,
        func.sum(_R.refusals),
        func.min(_R.first_at),
        func.max(_R.last_at),
    ).where(_R.surface == surface, _R.status.in_(LIMIT_OUTCOMES))
    for column, value in ((_R.team, team), (_R.key_id, key)):
        if value is not None:
            stmt = stmt.where(column == value)
    return on_days(stmt, _R.day, days).group_by(*grouping, _R.status, _R.blocked_by)
