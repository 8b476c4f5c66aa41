"""Database engine set-up shared by the audit log, the key store and the spend ledger.

Any SQLAlchemy URL works; SQLite (the default) gets WAL mode so readers (the
CLI, a notebook) never block the gateway's writes. Which tables exist, and how
the schema changes, is the composition root's business (`gateway_app.database`
and its migrations); this module only opens engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

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
