"""Database engine set-up shared by the audit log, the key store and the spend ledger.

Any SQLAlchemy URL works; SQLite (the default) gets WAL mode so readers (the
CLI, a notebook) never block the gateway's writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
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
