"""Running the gateway's Alembic migrations: where a database stands, and bringing it to the head.

The revisions live in ``gateway_app/migrations/versions`` (shipped in the package). The version is
kept in its own table, `VERSION_TABLE`, so the gateway can share a database with another
application that uses Alembic. A database made before migrations (no version table) is recognised
by its tables (`legacy.recognise`) and stamped before it is upgraded.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, Engine

from gateway_app.migrations.errors import SchemaTooNew
from gateway_app.migrations.legacy import recognise
from gateway_app.migrations.lock import LOCK_WAIT_SECONDS, migration_transaction

logger = logging.getLogger("mcp_gateway.database")

SCRIPT_LOCATION = Path(__file__).resolve().parent
VERSION_TABLE = "gateway_schema_version"
"""Alembic's version table, named for the gateway (Alembic's default is ``alembic_version``)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """The configuration env.py runs with; ``connection`` is the one the migrations use."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """This release's newest revision (there is exactly one: a test checks it)."""
    revision = scripts().get_current_head()
    assert revision is not None, "no migrations"
    return revision


def history() -> list[Script]:
    """Every revision, oldest first."""
    return list(reversed(list(scripts().walk_revisions())))


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands. ``revision`` is its stamped revision (None: unversioned);
    ``recognised`` is what an unversioned one matches (None: it has none of the gateway's tables)."""

    revision: str | None
    recognised: str | None
    head: str

    @property
    def current(self) -> str | None:
        """The revision its schema is at, stamped or recognised (None: empty)."""
        return self.revision if self.revision is not None else self.recognised

    @property
    def up_to_date(self) -> bool:
        return self.revision == self.head

    def describe(self) -> str:
        if self.revision is not None:
            return f"revision {self.revision}"
        if self.recognised is not None:
            return f"unversioned, made by a release before migrations (its tables match {self.recognised})"
        return "empty (none of the gateway's tables)"


def read_state(connection: Connection) -> SchemaState:
    """Raises `SchemaTooNew` for a revision this release does not know, `SchemaUnrecognised` for
    gateway tables that match no release."""
    heads = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_heads()
    newest = head()
    if not heads:
        return SchemaState(None, recognise(connection), newest)
    unknown = [revision for revision in heads if not _known(revision)]
    if unknown or len(heads) > 1:
        raise SchemaTooNew(
            f"its schema is at revision {', '.join(heads)}, which this release of mcp-gateway does not "
            f"know (its newest is {newest}): a newer release has upgraded it. Run that release or a "
            "newer one; this one does not write to a schema it does not know"
        )
    return SchemaState(heads[0], None, newest)


def _known(revision: str) -> bool:
    return revision in {script.revision for script in history()}  # exact: Alembic also takes prefixes


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did: ``before`` the schema's revision (stamped or recognised) when this process
    got the lock; ``stamped`` the revision an unversioned database was stamped at; ``applied`` the
    revisions this process ran (empty: it was up to date, possibly thanks to another process)."""

    before: str | None
    stamped: str | None
    applied: tuple[str, ...]
    after: str


def upgrade(engine: Engine, *, lock_wait: float = LOCK_WAIT_SECONDS) -> Upgrade:
    """Bring the database to this release's head, under the migration lock (safe when several
    processes do it at once: one migrates, the others wait and then find nothing to do)."""
    with engine.connect() as connection:
        state = read_state(connection)
        connection.rollback()
        if state.up_to_date:
            return Upgrade(state.revision, None, (), state.head)
        with migration_transaction(connection, wait=lock_wait):
            state = read_state(connection)  # again: another process may have done it meanwhile
            stamped = None
            if state.revision is None and state.recognised is not None:
                command.stamp(alembic_config(connection), state.recognised)
                stamped = state.recognised
            applied = pending(state.current)
            if applied:
                command.upgrade(alembic_config(connection), state.head)
    if stamped:
        logger.info("database: unversioned schema recognised as revision %s and stamped", stamped)
    if applied:
        logger.info(
            "database: schema upgraded from %s to %s (ran %s)",
            state.current or "empty",
            state.head,
            ", ".join(applied),
        )
    return Upgrade(state.current, stamped, applied, state.head)


def pending(current: str | None) -> tuple[str, ...]:
    """The revisions from ``current`` (exclusive; None: the beginning) to the head, oldest first."""
    steps = scripts().iterate_revisions(head(), current)
    return tuple(reversed([script.revision for script in steps]))
