"""Putting rows into a table so that one bad row never costs the others their place.

`store_rows` inserts a batch in one transaction, with its rollups (`gateway_common.rollups`); if
the database refuses it for any reason but being unavailable, it inserts the rows one by one and
reports which it refused. Values the database's JSON encoder cannot take are replaced by
the marker ``{"_unstorable": "<reason>"}`` (`unstorable`) by whoever prepares
the row. Used by `BatchWriter` and its fallback file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, Engine, Table, select
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway_common.rollups.upkeep import insert_rows
from policies.bounds import MAX_ERROR_CHARS, clip

Row = dict[str, Any]

UNSTORABLE = "_unstorable"
"""Key of the marker that replaces a value the database could not store: ``{"_unstorable": reason}``."""
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)
"""Errors that say the database cannot take anything right now, as opposed to refusing one row."""
ATTEMPTS = 3
"""Tries per batch while the database is unavailable."""


def unstorable(reason: str) -> dict[str, str]:
    return {UNSTORABLE: clip(reason, MAX_ERROR_CHARS) or ""}


def is_marker(value: Any) -> bool:
    return isinstance(value, dict) and UNSTORABLE in value


def describe(exc: BaseException) -> str:
    """One bounded line about an exception; never fails (a message may itself be unprintable, and
    SQLAlchemy's embeds the statement's parameters: whole rows)."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    try:
        lines = str(cause).strip().splitlines()
        detail = lines[0] if lines else ""
    except Exception:
        detail = "(message could not be rendered)"
    text = f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__
    return clip(text, MAX_ERROR_CHARS) or ""


def encodable(value: Any) -> bool:
    """Whether the database JSON encoder (orjson, as `gateway_common.db` sets it up) accepts ``value``."""
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except Exception:
        return False
    return True


def holds_datetimes(column: Any) -> bool:
    """DateTime columns, including SQLModel's UTC type decorator around one."""
    return isinstance(column.type, DateTime) or isinstance(getattr(column.type, "impl", None), DateTime)


def holds_json(column: Any) -> bool:
    return isinstance(column.type, JSON) or isinstance(getattr(column.type, "impl", None), JSON)


@dataclass
class Stored:
    """What became of the rows of one `store_rows`."""

    written: int = 0
    refused: list[tuple[Row, Exception]] = field(default_factory=list)
    """Rows the database refused one by one, with what it said."""
    unavailable: list[Row] = field(default_factory=list)
    """Rows not written because the database could not be reached (``error`` says why)."""
    error: str | None = None


def store_rows(engine: Engine, table: Table, rows: list[Row]) -> Stored:
    """Insert rows: all at once (retried while the database is unavailable), else one by one."""
    if not rows:
        return Stored()
    failure: Exception | None = None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                insert_rows(conn, table, rows)
            return Stored(written=len(rows))
        except UNAVAILABLE as exc:
            failure = exc
            if attempt < ATTEMPTS:
                threading.Event().wait(0.05 * attempt)
        except Exception as exc:
            failure = exc
            break
    assert failure is not None
    if isinstance(failure, UNAVAILABLE):
        return Stored(unavailable=rows, error=describe(failure))
    if len(rows) == 1:
        return Stored(refused=[(rows[0], failure)])
    stored = Stored()
    for index, row in enumerate(rows):
        try:
            with engine.begin() as conn:
                insert_rows(conn, table, [row])
            stored.written += 1
        except UNAVAILABLE as exc:
            stored.unavailable = rows[index:]
            stored.error = describe(exc)
            break
        except Exception as exc:
            stored.refused.append((row, exc))
    return stored


def already_present(engine: Engine, table: Table, row: Row) -> bool:
    """Whether the table holds a row with this row's primary key (a duplicate, not a bad row)."""
    keys = list(table.primary_key.columns)
    if not keys or any(row.get(column.name) is None for column in keys):
        return False
    try:
        query = select(*keys).where(*(column == row[column.name] for column in keys))
        with engine.connect() as conn:
            return conn.execute(query).first() is not None
    except Exception:
        return False
