"""Periods of time a question is asked about: ``--since 7d``, ``--until``, ``--month 2026-11``,
``--month last``, ``--week``, always with UTC boundaries.

Calendar periods are the budgets' (`policies.budgeting.period_bounds`): months from the 1st, ISO
weeks from Monday, days from midnight, all in UTC, so "this month's spend" in a report is the
spend a monthly budget counts. A `Period` is half open: ``start`` inclusive, ``end`` exclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from policies.budgeting import period_bounds, period_label

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-?W(\d{2})$", re.IGNORECASE)
_THIS = frozenset({"this", "current"})
_LAST = frozenset({"last", "previous"})


class PeriodError(ValueError):
    """A period that cannot be understood; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class Period:
    """``start <= timestamp < end``; a missing bound is open. ``label`` names it for people."""

    start: datetime | None
    end: datetime | None
    label: str

    @classmethod
    def all_time(cls) -> Period:
        return cls(None, None, "all time")

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (self.end is None or moment < self.end)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    """For labels (people read them): to the second."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_moment(text: str, now: datetime, *, flag: str = "--since") -> datetime:
    """``15m``, ``2h``, ``7d``, ``2w`` before ``now``, or an ISO date or timestamp (UTC without a zone)."""
    cleaned = text.strip()
    match = _RELATIVE.match(cleaned)
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return _utc(now) - timedelta(**{_UNITS[unit]: amount})
    try:
        stamp = datetime.fromisoformat(cleaned)
    except ValueError:
        raise PeriodError(
            f"{flag}: {text!r} is neither a duration (15m, 2h, 7d, 2w) nor an ISO date or timestamp"
        ) from None
    return _utc(stamp)


def month_period(text: str, now: datetime) -> Period:
    """``2026-11``, ``this`` (or ``current``) or ``last`` (or ``previous``): a calendar month in UTC."""
    cleaned = text.strip().lower()
    if cleaned in _THIS or cleaned in _LAST:
        start, end = period_bounds("monthly", _utc(now).timestamp())
        if cleaned in _LAST:
            end = start
            start = (start - timedelta(days=1)).replace(day=1)
    else:
        match = _MONTH.match(cleaned)
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise PeriodError(f"--month: {text!r} is not YYYY-MM, 'this' or 'last'")
        start = datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)
        _, end = period_bounds("monthly", start.timestamp())
    return Period(start, end, period_label("monthly", start))


def week_period(text: str, now: datetime) -> Period:
    """``2026-W48``, ``this`` (``current``) or ``last`` (``previous``): an ISO week (from Monday, UTC)."""
    cleaned = text.strip().lower()
    if cleaned in _THIS or cleaned in _LAST:
        start, end = period_bounds("weekly", _utc(now).timestamp())
        if cleaned in _LAST:
            start, end = start - timedelta(days=7), start
    else:
        match = _WEEK.match(cleaned)
        try:
            if not match:
                raise ValueError(text)
            day = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
        except ValueError:
            raise PeriodError(f"--week: {text!r} is not YYYY-Www (2026-W48), 'this' or 'last'") from None
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=7)
    return Period(start, end, period_label("weekly", start))


def parse_period(
    *,
    now: datetime,
    since: str | None = None,
    until: str | None = None,
    month: str | None = None,
    week: str | None = None,
    default: str | None = None,
) -> Period:
    """The period the options name: a calendar ``month`` or ``week``, or ``since``/``until`` (either
    may be left open). With none of them: ``default`` (a ``since`` value such as ``30d``), else all
    time."""
    calendar = [name for name, value in (("--month", month), ("--week", week)) if value is not None]
    if len(calendar) > 1 or (calendar and (since is not None or until is not None)):
        given = calendar + [name for name, v in (("--since", since), ("--until", until)) if v is not None]
        raise PeriodError(f"give one period: {' and '.join(given)} cannot be combined")
    if month is not None:
        return month_period(month, now)
    if week is not None:
        return week_period(week, now)
    if since is None and until is None:
        if default is None:
            return Period.all_time()
        since = default
    start = parse_moment(since, now) if since is not None else None
    end = parse_moment(until, now, flag="--until") if until is not None else None
    if start is not None and end is not None and end <= start:
        raise PeriodError(f"--until ({_stamp(end)}) is not after --since ({_stamp(start)})")
    if start is not None and end is not None:
        label = f"{_stamp(start)} to {_stamp(end)}"
    elif start is not None:
        label = f"since {_stamp(start)}"
    else:
        assert end is not None
        label = f"until {_stamp(end)}"
    return Period(start, end, label)
