"""Database engine set-up shared by the audit log, the key store and the spend ledger.

Any SQLAlchemy URL works; SQLite (the default) gets WAL mode so readers (the
CLI, a notebook) never block the gateway's writes. The gateway creates its
database (`make_engine` + `create_schema`); readers use `open_database`, which
refuses to create one: a relative ``sqlite:///data/gateway.db`` opened from
the wrong directory is a clear error, not a new empty database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import Column
from sqlmodel import SQLModel

from policies.database_url import normalise_database_url


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


def open_database(url: str) -> Engine:
    """An engine on the gateway's existing database, for reading it (the CLI, notebooks, scripts).

    Raises `DatabaseNotFound` when a SQLite file does not exist or a database holds none of the
    gateway's tables, instead of creating an empty one. Tables and columns a newer release added
    are created, so queries through the current models work on an older database.
    """
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        raise DatabaseNotFound(
            f"no gateway database at {file.resolve()} ({url}): the gateway creates it when it first "
            "starts; run this from the directory the gateway runs in, or give the file's absolute "
            "path (sqlite:////absolute/path/gateway.db)"
        )
    engine = make_engine(url, create_dirs=False)
    try:
        present = set(inspect(engine).get_table_names())
        known = {table.name for table in _gateway_tables()}
        if not present & known:
            raise DatabaseNotFound(
                f"{file.resolve() if file is not None else url} is not a gateway database "
                f"(none of its tables: {', '.join(sorted(known))})"
            )
        create_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _gateway_tables() -> list[Any]:
    # Importing registers the tables on SQLModel.metadata.
    from llm_proxy import ledger as _ledger  # noqa: F401

    from .audit import models as _audit  # noqa: F401
    from .keystore import ApiKey as _api_key  # noqa: F401

    return list(SQLModel.metadata.sorted_tables)


def create_schema(engine: Engine) -> None:
    """Create every table the gateway knows (idempotent)."""
    _gateway_tables()
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
