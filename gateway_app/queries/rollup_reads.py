"""A period as the reports read it: its whole UTC days from the daily rollups
(`gateway_common.rollups`), the partial days at its ends from the rows themselves, so that an
answer is the rows' answer while a 90-day report reads a few thousand rollup rows and at most two
days of rows.

The rollups are kept in the same transaction as the rows (by whoever inserts them), so today's rollup
row is as current as the rows; a period open at its end reads every day from its first whole one
through the rollups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_

from gateway_app.queries.base import as_utc
from gateway_app.queries.period import Period

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Split:
    """Where a period's rows are counted: ``days`` (first day, day after the last; None: open) from
    the rollups, or None when the period holds no whole day; ``edges`` from the rows."""

    days: tuple[str | None, str | None] | None
    edges: tuple[Period, ...]


def _midnight(moment: datetime) -> datetime:
    return as_utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def day_text(moment: datetime) -> str:
    """A UTC midnight as the rollups' ``day`` (``YYYY-MM-DD``)."""
    return moment.strftime("%Y-%m-%d")


def split(period: Period) -> Split:
    first = None if period.start is None else _midnight(period.start)
    if first is not None and period.start is not None and first < as_utc(period.start):
        first += DAY  # the first whole day
    end = None if period.end is None else _midnight(period.end)
    if first is not None and end is not None and first >= end:
        return Split(None, (period,))
    edges = []
    if period.start is not None and first is not None and as_utc(period.start) < first:
        edges.append(Period(period.start, first, period.label))
    if period.end is not None and end is not None and end < as_utc(period.end):
        edges.append(Period(end, period.end, period.label))
    return Split(
        (None if first is None else day_text(first), None if end is None else day_text(end)), tuple(edges)
    )


def on_days(stmt: Any, column: Any, days: tuple[str | None, str | None]) -> Any:
    """``stmt`` restricted to the rollup rows of ``days``."""
    first, end = days
    if first is not None:
        stmt = stmt.where(column >= first)
    if end is not None:
        stmt = stmt.where(column < end)
    return stmt


def _bits(first: int, last: int) -> int:
    """Days ``first`` to ``last`` of a month (1-based, inclusive) as `ToolKeysMonthly.days` bits."""
    return ((1 << (last - first + 1)) - 1) << (first - 1)


def _month(day: date) -> str:
    return day.strftime("%Y-%m")


def on_months(stmt: Any, month: Any, bits: Any, days: tuple[str | None, str | None]) -> Any:
    """``stmt`` restricted to monthly rows with a day bit among ``days``: the months inside whole,
    the first and last month by their bits."""
    first = None if days[0] is None else date.fromisoformat(days[0])
    last = None if days[1] is None else date.fromisoformat(days[1]) - DAY
    if first is not None and last is not None and _month(first) == _month(last):
        return stmt.where(month == _month(first), bits.bitwise_and(_bits(first.day, last.day)) != 0)
    found = []
    inside = []
    if first is not None:
        found.append(and_(month == _month(first), bits.bitwise_and(_bits(first.day, 31)) != 0))
        inside.append(month > _month(first))
    if last is not None:
        found.append(and_(month == _month(last), bits.bitwise_and(_bits(1, last.day)) != 0))
        inside.append(month < _month(last))
    if not found:
        return stmt
    return stmt.where(or_(and_(*inside), *found))


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return min(as_utc(a), as_utc(b))


def latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return max(as_utc(a), as_utc(b))


def larger(a: str | None, b: str | None) -> str | None:
    """SQL's MAX of two text values (NULLs ignored)."""
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)
