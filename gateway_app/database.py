"""The gateway's database as a whole: every table of every part, created or opened.

The gateway creates its database (`create_schema`); readers (the CLI, notebooks,
the README's snippets) use `open_database`, which refuses to create one: a
relative ``sqlite:///data/gateway.db`` opened from the wrong directory is a
clear error, not a new empty database.
"""

from __future__ import annotations

from sqlalchemy import Engine, Table, inspect

from gateway_common.db import DatabaseNotFound, create_tables, make_engine, sqlite_file
from gateway_common.keystore import ApiKey, FileKeyRevocation
from llm_proxy.ledger import BudgetAlertRecord, ModelRequest
from mcp_gateway.audit.models import ToolCall

__all__ = ["DatabaseNotFound", "all_tables", "create_schema", "open_database"]


def all_tables() -> list[Table]:
    models = (ApiKey, FileKeyRevocation, ToolCall, ModelRequest, BudgetAlertRecord)
    return [model.__table__ for model in models]  # type: ignore[union-attr]


def create_schema(engine: Engine) -> None:
    """Create every table the gateway knows (idempotent), with the columns newer releases added."""
    create_tables(engine, all_tables())


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
        known = {table.name for table in all_tables()}
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
