"""What model requests cost: spend for a period grouped by team, key, model or provider, with the
daily series a dashboard draws as bars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, null, select

from gateway_app.queries.base import Database, connect, day_of, group_keys, within
from gateway_app.queries.period import Period
from gateway_app.queries.requests import MODEL
from gateway_app.queries.rollup_reads import on_days, split
from gateway_common.rollups import SpendDaily, UsageDaily
from llm_proxy.ledger import ModelRequest

_M = ModelRequest.__table__.c  # type: ignore[attr-defined]
_U = UsageDaily.__table__.c  # type: ignore[attr-defined]
_S = SpendDaily.__table__.c  # type: ignore[attr-defined]

SpendDimension = Literal["team", "key", "model", "provider"]
DIMENSIONS: dict[SpendDimension, Any] = {
    "team": _M.team,
    "key": _M.key_id,
    "model": MODEL,
    "provider": _M.provider,
}
ROLLED: dict[SpendDimension, str] = {
    "team": "team",
    "key": "key_id",
    "model": "model",
    "provider": "provider",
}
"""The same groups' columns in the rollups (whose ``model`` is the served model, else the requested one)."""
_SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")


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
    # Spend without keys (a few rows a day) unless grouped or filtered by key.
    rollup = _U if by == "key" or key is not None else _S
    rolled = rollup[ROLLED[by]]
    parts = split(period)
    statements = []
    for edge in parts.edges:
        day = day_of(_M.timestamp) if daily else null()
        stmt = select(day, group, func.count(), *(func.sum(_M[name]) for name in _SUMS))
        grouping = [day, *group_keys(group)] if daily else group_keys(group)
        statements.append(
            within(stmt.where(*_filters(_M, team, key)), _M.timestamp, edge).group_by(*grouping)
        )
    if parts.days is not None:
        day = rollup.day if daily else null()
        stmt = select(day, rolled, *(func.sum(rollup[name]) for name in ("requests", *_SUMS)))
        stmt = on_days(stmt.where(*_filters(rollup, team, key)), rollup.day, parts.days)
        statements.append(stmt.group_by(*([day, rolled] if daily else [rolled])))
    totals: dict[str | None, list[Any]] = {}
    days: dict[tuple[str, str | None], list[Any]] = {}
    with connect(database) as connection:
        for stmt in statements:
            for when, name, n, i, o, cr, cw, usd in connection.execute(stmt):
                sums = (int(n), int(i or 0), int(o or 0), int(cr or 0), int(cw or 0), float(usd or 0.0))
                seen = totals.setdefault(name, [0, 0, 0, 0, 0, 0.0])
                for index, value in enumerate(sums):
                    seen[index] += value
                if daily:
                    bar = days.setdefault((str(when), name), [0, 0.0])
                    bar[0] += sums[0]
                    bar[1] += sums[5]
    rows = [SpendRow(name, *sums) for name, sums in totals.items()]
    rows.sort(key=lambda row: (-row.cost_usd, _name(row.group)))
    series = None
    if daily:
        series = [DailySpend(when, name, n, usd) for (when, name), (n, usd) in days.items()]
        series.sort(key=lambda row: (row.day, _name(row.group)))
    return SpendReport(period, by, rows, sum(row.cost_usd for row in rows), series)


def _filters(columns: Any, team: str | None, key: str | None) -> list[Any]:
    return [columns[name] == value for name, value in (("team", team), ("key_id", key)) if value is not None]
