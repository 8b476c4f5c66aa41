"""``gateway.database_url``: normalised and checked the way the gateway will open it.

The check parses the URL with SQLAlchemy's own parser and imports the driver it
names, without connecting: a URL SQLAlchemy cannot parse, an unknown database
kind or a driver that is not installed is refused when the file is validated
(by ``mcp-gateway check`` as by ``serve``: the composition root hands this check
to the policy loader, which must not import SQLAlchemy itself), not when the
gateway opens it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError


def normalise_database_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver we ship)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def check_database_url(url: str) -> str:
    """``url`` unchanged if the gateway can open it; else `ValueError` saying why."""
    try:
        parsed = make_url(normalise_database_url(url))
    except ArgumentError:
        raise ValueError(
            "not a database URL SQLAlchemy can parse; expected e.g. sqlite:///data/gateway.db "
            "or postgresql://user@host/dbname"
        ) from None
    try:
        dialect: Any = parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"unknown database kind {parsed.drivername!r}; use sqlite:///PATH or postgresql://..."
        ) from None
    if getattr(dialect, "is_async", False):
        raise ValueError(
            f"{parsed.drivername!r} is an asyncio driver; give the plain URL (e.g. postgresql://...)"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(
            f"the driver for {parsed.drivername!r} is not installed ({exc}); "
            "this gateway ships SQLite and PostgreSQL (psycopg 3)"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError(
            "an in-memory SQLite database is private to one connection; give a file, "
            "e.g. sqlite:///data/gateway.db"
        )
    return url
