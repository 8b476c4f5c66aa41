"""What model requests cost: spend for a period grouped by team, key, model or provider, with the
daily series a dashboard draws as bars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select

from gateway_app.queries.base import Database, connect, day_of, group_keys, within
from gateway_app.queries.period import Period
from gateway_app.queries.requests import MODEL
from llm_proxy.ledger import ModelRequest

_M = ModelRequest.__table__.c  # type: ignore[attr-defined]

SpendDimension = Literal["team", "key", "model", "provider"]
DIMENSIONS: dict[SpendDimension, Any] = {
    "team": _M.team,
    "key": _M.key_id,
    "model": MODEL,
    "provider": _M.provider,
}


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One group's spend: ``group`` is the team, key id, model or provider (None: requests without
    one, e.g. a key without a team, or refused before any provider)."""

    group: str | None
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class DailySpend:
    day: str
    """The UTC day, ``YYYY-MM-DD``."""
    group: str | None
    requests: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class SpendReport:
    period: Period
    by: SpendDimension
    rows: list[SpendRow]
    """Most spent first; ties by group."""
    total_usd: float
    daily: list[DailySpend] | None
    """By day, then group (days without requests are absent); only when asked for."""


def _name(value: str | None) -> str:
    return "" if value is None else value


def spend(
    database: Database,
    period: Period,
    *,
    by: SpendDimension = "team",
    team: str | None = None,
    key: str | None = None,
    daily: bool = False,
) -> SpendReport:
    """Model requests' spend and tokens in ``period``, per ``by``; refused requests count as requests
    (they cost nothing)."""
    if by not in DIMENSIONS:
        raise ValueError(f"spend is grouped by one of {', '.join(DIMENSIONS)}, not {by!r}")
    group = DIMENSIONS[by]
    stmt = select(
        group,
        func.count(),
        func.sum(_M.input_tokens),
        func.sum(_M.output_tokens),
        func.sum(_M.cache_read_tokens),
        func.sum(_M.cache_write_tokens),
        func.sum(_M.cost_usd),
    )
    for column, value in ((_M.team, team), (_M.key_id, key)):
        if value is not None:
            stmt = stmt.where(column == value)
    stmt = within(stmt, _M.timestamp, period)
    series = None
    with connect(database) as connection:
        rows = [
            SpendRow(name, int(n), int(i or 0), int(o or 0), int(cr or 0), int(cw or 0), float(usd or 0.0))
            for name, n, i, o, cr, cw, usd in connection.execute(stmt.group_by(*group_keys(group)))
        ]
        if daily:
            day = day_of(_M.timestamp)
            by_day = (
                stmt.with_only_columns(day, group, func.count(), func.sum(_M.cost_usd))
                .group_by(day, *group_keys(group))
                .order_by(day)
            )
            series = [
                DailySpend(str(when), name, int(n), float(usd or 0.0))
                for when, name, n, usd in connection.execute(by_day)
            ]
            series.sort(key=lambda row: (row.day, _name(row.group)))
    rows.sort(key=lambda row: (-row.cost_usd, _name(row.group)))
    return SpendReport(period, by, rows, sum(row.cost_usd for row in rows), series)
