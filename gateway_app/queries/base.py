"""What every query shares: where it reads from, pages and their cursors, the UTC day of a row.

A query takes a ``Database`` (an `Engine`, a `Connection` or a SQLModel `Session`), so the CLI
hands it the engine, the admin API a connection of its own, and a notebook its session.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, String, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from gateway_app.queries.period import Period

Database = Engine | Connection | Session
"""Where a query reads: an engine (a connection is taken and given back), a connection or a session."""

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
"""The most rows one page of a listing holds (the CLI's ``--all`` follows the cursors instead)."""

T = TypeVar("T")


class InvalidCursor(ValueError):
    """A page cursor that no listing handed out."""


@contextlib.contextmanager
def connect(database: Database) -> Iterator[Connection]:
    if isinstance(database, Engine):
        with database.connect() as connection:
            yield connection
    elif isinstance(database, Session):
        yield database.connection()
    else:
        yield database


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, newest first. ``next_cursor`` fetches the following (older) rows; None
    when this page is the last."""

    items: list[T]
    next_cursor: str | None
    limit: int


def page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"a page holds 1 to {MAX_PAGE_SIZE} rows, not {limit}")
    return limit


def encode_cursor(timestamp: datetime, ident: str) -> str:
    raw = f"{as_utc(timestamp).isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, ident = raw.split("|", 1)
        return as_utc(datetime.fromisoformat(stamp)), ident
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor(f"not a page cursor: {cursor[:64]!r}") from None


def newest_first(
    stmt: Select[Any], timestamp: Any, ident: Any, limit: int, cursor: str | None
) -> Select[Any]:
    """Order by (timestamp, id) descending, after ``cursor``, one row more than the page (to know
    whether another page follows). The plain ``timestamp <=`` bound lets every database start the
    index scan at the cursor."""
    if cursor is not None:
        stamp, after = decode_cursor(cursor)
        stmt = stmt.where(timestamp <= stamp, tuple_(timestamp, ident) < tuple_(stamp, after))
    return stmt.order_by(timestamp.desc(), ident.desc()).limit(page_size(limit) + 1)


def within(stmt: Select[Any], timestamp: Any, period: Period) -> Select[Any]:
    if period.start is not None:
        stmt = stmt.where(timestamp >= period.start)
    if period.end is not None:
        stmt = stmt.where(timestamp < period.end)
    return stmt


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


class utc_day(FunctionElement[str]):
    """The UTC calendar day (``YYYY-MM-DD``) of a timestamp column, in each database's own terms."""

    type = String()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day)
def _utc_day_default(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps UTC timestamps as ISO text: the day is its first ten characters.
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def day_of(column: ColumnElement[Any]) -> utc_day:
    return utc_day(column)


class ungrouped_index(FunctionElement[Any]):
    """A column to GROUP BY whose own indexes SQLite must not walk: grouped in index order, a
    report reads every row of the table through that index (seconds on a million rows); grouped by
    ``+column`` (SQLite's no-op that hides a column from the planner), it scans only the period's
    range of the covering index and groups in a temporary b-tree. Other databases get the column."""

    inherit_cache = True
    name = "ungrouped_index"

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(ungrouped_index)
def _ungrouped_default(element: ungrouped_index, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(ungrouped_index, "sqlite")
def _ungrouped_sqlite(element: ungrouped_index, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


def group_keys(*columns: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    """GROUP BY terms for report aggregates (see `ungrouped_index`)."""
    return [ungrouped_index(column) for column in columns]
