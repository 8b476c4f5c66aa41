"""The period a page is asked about, from the same words the CLI takes (``since=7d``,
``until=2026-11-20``, ``month=this``, ``week=last``), and links that carry filters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from gateway_app.queries import Period, PeriodError, parse_period
from policies.budgeting import period_bounds


def requested(now: datetime, args: dict[str, str | None], default: str | None) -> tuple[Period, str | None]:
    """The period the query names, or ``default`` with the reason when it cannot be understood."""
    try:
        return (
            parse_period(
                now=now,
                since=args.get("since"),
                until=args.get("until"),
                month=args.get("month"),
                week=args.get("week"),
                default=default,
            ),
            None,
        )
    except PeriodError as exc:
        return parse_period(now=now, default=default), str(exc)


def today(now: datetime) -> Period:
    start, end = period_bounds("daily", now.timestamp())
    return Period(start, end, f"today, {start:%Y-%m-%d} (UTC)")


def stamp(moment: datetime) -> str:
    """A moment as a ``since``/``until`` value (ISO, UTC)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def since_of(period: Period) -> dict[str, str]:
    """``since``/``until`` parameters that select ``period`` on another page."""
    found = {}
    if period.start is not None:
        found["since"] = stamp(period.start)
    if period.end is not None:
        found["until"] = stamp(period.end)
    return found


def url(path: str, **params: str | None) -> str:
    """``path`` with the parameters that have a value."""
    given = {name: value for name, value in params.items() if value not in (None, "")}
    return f"{path}?{urlencode(given)}" if given else path


def days_of(period: Period, now: datetime, first_seen: date | None) -> tuple[date, date]:
    """The first and last UTC day a chart of ``period`` covers (an open start: the first day seen)."""
    last = (period.end - timedelta(microseconds=1)).date() if period.end is not None else now.date()
    last = min(last, now.date()) if period.end is None or period.end > now else last
    first = period.start.astimezone(UTC).date() if period.start is not None else (first_seen or last)
    return first, max(first, last)
