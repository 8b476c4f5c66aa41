"""Database engine set-up shared by the audit log, the key store and the spend ledger.

Any SQLAlchemy URL works; SQLite (the default) gets WAL mode so readers (the
CLI, a notebook) never block the gateway's writes. PostgreSQL connections get bounds on a
server that stops answering (`POSTGRES_CONNECT_ARGS`), unless the URL sets them itself.
Which tables exist, and how the schema changes, is the composition root's business
(`gateway_app.database` and its migrations); this module only opens engines.
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


POSTGRES_CONNECT_ARGS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
"""libpq's defaults wait on an unreachable server for as long as TCP does: a connection attempt
until the kernel gives up, a query in flight for about 15 minutes (TCP retransmissions). During a
failover or a network partition the writers would hang that long with their batches, and rows
pile up in memory where a stop past its grace period loses them. Bounded, a dead server is an
error within about 30 s (keepalives while waiting for a reply, ``tcp_user_timeout`` for data
sent and never acknowledged), and the writers take their unavailable path (retries, then the
fallback file). A slow query on a live server is not cut short: nothing here bounds one."""


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
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {k: v for k, v in POSTGRES_CONNECT_ARGS.items() if k not in parsed.query}
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
