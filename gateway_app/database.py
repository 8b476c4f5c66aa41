"""The gateway's database as a whole: every table of every part, and its schema's migrations.

Only the migrations (`gateway_app/migrations`) create or change tables. `serve` upgrades the
database when it starts (`prepare_database`, unless ``gateway.database_migrations: manual``) and
``mcp-gateway db upgrade`` does it by hand; both hold a database lock, so replicas that start
together are safe. Everything else opens the database with `open_database`, which never changes an
existing schema: one older than this release is refused with a message saying to run
``mcp-gateway db upgrade``, and a missing one is refused too (a relative ``sqlite:///data/gateway.db``
opened from the wrong directory is a clear error, not a new empty database) unless the caller asks
for it to be created (``keys create``).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Engine, MetaData, Table

from gateway_app.admin_actions import AdminAction
from gateway_app.migrations.errors import (
    MigrationLockTimeout,
    SchemaError,
    SchemaOutOfDate,
    SchemaTooNew,
    SchemaUnrecognised,
)
from gateway_app.migrations.lock import LOCK_WAIT_SECONDS
from gateway_app.migrations.runner import SchemaState, Upgrade, read_state, upgrade
from gateway_app.reload_log import PolicyReload
from gateway_common.db import DatabaseNotFound, make_engine, sqlite_file
from gateway_common.keystore import ApiKey, FileKeyRevocation, KeyChange
from gateway_common.rollups import ROLLUP_MODELS
from gateway_common.rollups import rebuild_rollups as _rebuild
from llm_proxy.ledger import BudgetAlertRecord, ModelRequest
from mcp_gateway.audit.models import ToolCall

__all__ = [
    "DatabaseNotFound",
    "MigrationLockTimeout",
    "SchemaError",
    "SchemaOutOfDate",
    "SchemaTooNew",
    "SchemaUnrecognised",
    "Upgrade",
    "all_tables",
    "create_schema",
    "describe",
    "open_database",
    "prepare_database",
    "rebuild_rollups",
    "require_current",
    "schema_state",
    "target_metadata",
    "upgrade_database",
]

UPGRADE_HINT = "run `mcp-gateway db upgrade --config FILE` (or --database-url URL)"


def all_tables() -> list[Table]:
    models = (
        ApiKey,
        FileKeyRevocation,
        KeyChange,
        ToolCall,
        ModelRequest,
        BudgetAlertRecord,
        PolicyReload,
        AdminAction,
        *ROLLUP_MODELS,
    )
    return [model.__table__ for model in models]  # type: ignore[union-attr]


def target_metadata() -> MetaData:
    """The schema the models declare, which the migrations must produce (a test compares them)."""
    metadata = MetaData()
    for table in all_tables():
        table.to_metadata(metadata)
    return metadata


def describe(engine: Engine) -> str:
    """The database, for messages: a SQLite file's absolute path, or the URL without its password."""
    url = engine.url.render_as_string(hide_password=True)
    file = sqlite_file(url)
    return str(file.resolve()) if file is not None else url


def _named(engine: Engine, exc: SchemaError) -> SchemaError:
    return type(exc)(f"database {describe(engine)}: {exc}")


def schema_state(engine: Engine) -> SchemaState:
    """Where the database's schema stands; raises `SchemaTooNew` or `SchemaUnrecognised` when this
    release cannot use it at all."""
    try:
        with engine.connect() as connection:
            return read_state(connection)
    except SchemaError as exc:
        raise _named(engine, exc) from None


def upgrade_database(engine: Engine, *, lock_wait: float = LOCK_WAIT_SECONDS) -> Upgrade:
    """Bring the schema to this release's head (creating it in an empty database), under the
    migration lock; an unversioned database from an earlier release is stamped first."""
    try:
        return upgrade(engine, lock_wait=lock_wait)
    except SchemaError as exc:
        raise _named(engine, exc) from None


def create_schema(engine: Engine) -> None:
    """`upgrade_database` without its report (tests and embedding code)."""
    upgrade_database(engine)


def require_current(engine: Engine, *, hint: str = UPGRADE_HINT) -> SchemaState:
    """Refuse (`SchemaOutOfDate`) a database whose schema is not this release's, without changing it."""
    state = schema_state(engine)
    if not state.up_to_date:
        raise SchemaOutOfDate(
            f"database {describe(engine)} is {state.describe()}; this release needs revision "
            f"{state.head}: {hint}"
        )
    return state


def prepare_database(engine: Engine, migrations: Literal["auto", "manual"]) -> Upgrade | None:
    """At start: upgrade (``auto``), or refuse a schema that is not this release's (``manual``)."""
    if migrations == "auto":
        return upgrade_database(engine)
    require_current(engine, hint=f"gateway.database_migrations is manual: {UPGRADE_HINT} first")
    return None


def open_database(url: str, *, create: bool = False) -> Engine:
    """An engine on the gateway's existing database (the CLI, notebooks, scripts), at this release's
    schema.

    Raises `DatabaseNotFound` when a SQLite file does not exist or a database holds none of the
    gateway's tables, unless ``create`` (then it is created at this release's schema), and
    `SchemaOutOfDate` when its schema is older than this release's (it is never upgraded here).
    """
    file = sqlite_file(url)
    if file is not None and not file.is_file() and not create:
        raise DatabaseNotFound(
            f"no gateway database at {file.resolve()} ({url}): the gateway creates it when it first "
            "starts; run this from the directory the gateway runs in, or give the file's absolute "
            "path (sqlite:////absolute/path/gateway.db)"
        )
    engine = make_engine(url, create_dirs=create)
    try:
        state = schema_state(engine)
        if state.current is None:
            if not create:
                raise DatabaseNotFound(f"{describe(engine)} is not a gateway database (none of its tables)")
            upgrade_database(engine)
        else:
            require_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def rebuild_rollups(engine: Engine) -> dict[str, int]:
    """Count every row again into empty rollups (after rows went in some other way than the
    gateway's writers, e.g. a bulk import), in one transaction that holds off the writers meanwhile.
    Returns the rows counted per table."""
    require_current(engine)
    sources: dict[str, Table] = {
        "tool_calls": ToolCall.__table__,  # type: ignore[attr-defined]
        "model_requests": ModelRequest.__table__,  # type: ignore[attr-defined]
    }
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # inserts wait; reads (reports) go on
            conn.exec_driver_sql("LOCK TABLE tool_calls, model_requests IN SHARE MODE")
        return _rebuild(conn, sources)
