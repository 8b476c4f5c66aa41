"""Alembic's environment for the gateway's migrations.

The gateway runs it with a connection of its own (`runner.alembic_config`): inside the migration
lock's transaction, which commits it. A developer runs it through the ``alembic`` command
(configured in pyproject.toml) with ``-x database_url=URL``, e.g. to autogenerate a revision
against a scratch database (README, "Changing the schema").
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, MetaData
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from gateway_app.database import target_metadata
from gateway_app.migrations.runner import VERSION_TABLE
from gateway_common.db import make_engine


def _render_item(kind: str, item: Any, autogen: AutogenContext) -> str | Literal[False]:
    """SQLModel's types as the plain SQLAlchemy types they store (no sqlmodel import in revisions):
    its strings are VARCHAR, its datetimes are timezone-aware DateTime."""
    if kind == "type" and isinstance(item, AutoString):
        return f"sa.String(length={item.length})" if item.length else "sa.String()"
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        render_item=_render_item,
        compare_type=True,
    )


def run() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported: revision 0002 inspects the database")
    metadata = target_metadata()
    connection = context.config.attributes.get("connection")
    if connection is not None:
        configure(connection, metadata)
        with context.begin_transaction():  # joins the caller's transaction
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("database_url")
    if not url:
        raise SystemExit(
            "give the database: alembic -x database_url=sqlite:///PATH ... (a scratch database; "
            "operators upgrade with `mcp-gateway db upgrade`)"
        )
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            configure(connection, metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()


run()
