"""Database engine set-up shared by the audit log, the key store and the spend ledger.

Any SQLAlchemy URL works; SQLite (the default) gets WAL mode so readers (the
CLI, a notebook) never block the gateway's writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import Column
from sqlmodel import SQLModel


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver we ship)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"json_serializer": _json_serializer, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
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


def create_schema(engine: Engine) -> None:
    """Create every table the gateway knows (idempotent)."""
    # Importing registers the tables on SQLModel.metadata.
    from llm_proxy import ledger as _ledger  # noqa: F401

    from .audit import models as _audit  # noqa: F401
    from .keystore import ApiKey as _api_key  # noqa: F401

    SQLModel.metadata.create_all(engine)
    add_missing_columns(engine)


def add_missing_columns(engine: Engine) -> list[str]:
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
        for table in SQLModel.metadata.sorted_tables:
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
