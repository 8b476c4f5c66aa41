"""Periods: relative and ISO moments, calendar months and ISO weeks in UTC, and their refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway_app.queries import Period, PeriodError, parse_moment, parse_period

NOW = datetime(2026, 1, 7, 15, 30, tzinfo=UTC)
"""A Wednesday in the first ISO week of 2026 (which began on Monday 5 January)."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        (" 1.5d ", NOW - timedelta(days=1.5)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2025-12-01", datetime(2025, 12, 1, tzinfo=UTC)),
        ("2025-12-01T08:00", datetime(2025, 12, 1, 8, tzinfo=UTC)),
        ("2025-12-01T08:00+02:00", datetime(2025, 12, 1, 6, tzinfo=UTC)),
    ],
)
def test_moments(text: str, expected: datetime) -> None:
    moment = parse_moment(text, NOW)
    assert moment == expected and moment.tzinfo == UTC


def test_calendar_months_in_utc() -> None:
    assert parse_period(now=NOW, month="last") == Period(
        datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "2025-12"
    )
    assert parse_period(now=NOW, month="this") == Period(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), "2026-01"
    )
    assert parse_period(now=NOW, month="2024-02").end == datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_period(now=NOW, month="Current") == parse_period(now=NOW, month="this")


def test_iso_weeks_from_monday() -> None:
    this = parse_period(now=NOW, week="this")
    assert this == Period(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC), "2026-W02")
    last = parse_period(now=NOW, week="last")
    assert last == Period(datetime(2025, 12, 29, tzinfo=UTC), datetime(2026, 1, 5, tzinfo=UTC), "2026-W01")
    assert parse_period(now=NOW, week="2026-W01") == last
    assert parse_period(now=NOW, week="2020w53").start == datetime(2020, 12, 28, tzinfo=UTC)


def test_since_until_and_defaults() -> None:
    assert parse_period(now=NOW) == Period.all_time()
    assert parse_period(now=NOW, default="30d") == Period(
        NOW - timedelta(days=30), None, "since 2025-12-08T15:30:00Z"
    )
    window = parse_period(now=NOW, since="2025-12-01", until="2025-12-02")
    assert window.label == "2025-12-01T00:00:00Z to 2025-12-02T00:00:00Z"
    assert window.contains(datetime(2025, 12, 1, tzinfo=UTC)) and not window.contains(
        datetime(2025, 12, 2, tzinfo=UTC)
    )
    assert parse_period(now=NOW, until="1d") == Period(
        None, NOW - timedelta(days=1), "until 2026-01-06T15:30:00Z"
    )
    assert parse_period(now=NOW, since="7d", default="30d").start == NOW - timedelta(days=7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"since": "yesterday"}, "--since: 'yesterday' is neither a duration"),
        ({"until": "5y"}, "--until: '5y' is neither"),
        ({"month": "2026-00"}, "--month: '2026-00' is not YYYY-MM"),
        ({"month": "next"}, "--month: 'next'"),
        ({"week": "2026-W54"}, "--week: '2026-W54' is not YYYY-Www"),
        ({"month": "last", "week": "last"}, "--month and --week cannot be combined"),
        ({"month": "last", "until": "1d"}, "--month and --until cannot be combined"),
        ({"since": "1d", "until": "2d"}, "is not after --since"),
    ],
)
def test_what_is_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(PeriodError, match=message.replace("(", r"\(")):
        parse_period(now=NOW, **options)
