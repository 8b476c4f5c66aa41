"""Database engine set-up shared by the audit log, the key store and the spend ledger.

Any SQLAlchemy URL works; SQLite (the default) gets WAL mode so readers (the
CLI, a notebook) never block the gateway's writes. Which tables exist is the
composition root's business (`gateway_app.database`); this module only knows
how to open an engine and create or extend the tables it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, Table, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import Column
from sqlmodel import SQLModel

from gateway_common.database_url import normalise_database_url


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


class DatabaseNotFound(LookupError):
    """`open_database` was given a database that does not exist (or is not the gateway's)."""


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and for in-memory or URI forms)."""
    parsed = make_url(normalise_database_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: str, *, create_dirs: bool = True) -> Engine:
    """An engine for ``url``; for SQLite, the file's directory is created unless ``create_dirs`` is false."""
    url = normalise_database_url(url)
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"json_serializer": _json_serializer, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "sqlite":
        file = sqlite_file(url)
        if file is not None and create_dirs:
            file.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def create_tables(engine: Engine, tables: list[Table]) -> None:
    """Create ``tables`` where missing and add the columns newer releases declare (idempotent)."""
    SQLModel.metadata.create_all(engine, tables=tables)
    add_missing_columns(engine, tables)


def add_missing_columns(engine: Engine, tables: list[Table] | None = None) -> list[str]:
    """Add columns that newer releases declare to tables an older release created.

    ``create_all`` creates missing tables but never alters existing ones, so a database
    from an earlier release would refuse every row that names a new column. New columns
    are always nullable (or have a default the model fills in), so adding them is safe.
    Returns ``table.column`` for each column added.
    """
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    added: list[str] = []
    with engine.begin() as conn:
        for table in tables if tables is not None else SQLModel.metadata.sorted_tables:
            if table.name not in existing_tables:
                continue
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                conn.execute(text(_add_column_sql(engine, table.name, column)))
                added.append(f"{table.name}.{column.name}")
    return added


def _add_column_sql(engine: Engine, table: str, column: Column[Any]) -> str:
    preparer = engine.dialect.identifier_preparer
    kind = column.type.compile(dialect=engine.dialect)
    return f"ALTER TABLE {preparer.quote(table)} ADD COLUMN {preparer.quote(column.name)} {kind}"
