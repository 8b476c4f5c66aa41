"""The migration lock: one process at a time changes the schema; the others wait, then find it done.

Replicas started together all run the start-up upgrade. Each takes this lock, then reads the
schema's revision again: the first one upgrades, the others find the head and do nothing (no
second ``CREATE TABLE`` racing the first).

- PostgreSQL: a session-level advisory lock on a fixed key (advisory locks are per database), taken
  on the migration's own connection; the upgrade runs in one transaction inside it (PostgreSQL's DDL
  is transactional) and the lock is released after the commit. A process that dies releases it with
  its session.
- SQLite: ``BEGIN EXCLUSIVE`` on the migration's connection, with the driver's own transaction
  handling switched off so that every statement, DDL included, is in that one transaction: the
  upgrade is atomic and no other connection writes meanwhile (WAL readers go on reading).
- Other databases: no lock (logged); run ``mcp-gateway db upgrade`` before starting replicas.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from gateway_app.migrations.errors import MigrationLockTimeout

logger = logging.getLogger("mcp_gateway.database")

ADVISORY_LOCK_KEY = 0x6D637067772D6462
"""``pg_advisory_lock`` key of the schema migration: the bytes ``mcpgw-db``."""

LOCK_WAIT_SECONDS = 600.0
"""How long a process waits for another one's migration before giving up."""

_POLL_SECONDS = 0.2


@contextlib.contextmanager
def migration_transaction(
    connection: Connection,
    *,
    wait: float = LOCK_WAIT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Run the block in one transaction holding the migration lock; commit it, or roll it back on error.

    Raises `MigrationLockTimeout` when another process holds the lock for more than ``wait`` seconds.
    """
    if connection.in_transaction():
        connection.rollback()
    backend = connection.dialect.name
    if backend == "postgresql":
        with _advisory_lock(connection, wait, clock, sleep), connection.begin():
            yield
    elif backend == "sqlite":
        with _exclusive_sqlite(connection, wait, clock, sleep):
            yield
    else:
        logger.warning(
            "no migration lock for %s databases: replicas starting together may race; "
            "run `mcp-gateway db upgrade` before starting them",
            backend,
        )
        with connection.begin():
            yield


def _waiting(wait: float) -> None:
    logger.info("another process is upgrading the database schema; waiting for it (at most %.0f s)", wait)


def _timeout(wait: float) -> MigrationLockTimeout:
    return MigrationLockTimeout(
        f"another process has held the schema migration lock for more than {wait:.0f} s; if no "
        "migration is running (a stuck process?), stop that process and start again"
    )


@contextlib.contextmanager
def _advisory_lock(
    connection: Connection, wait: float, clock: Callable[[], float], sleep: Callable[[float], None]
) -> Iterator[None]:
    deadline = clock() + wait
    waited = False
    while True:
        locked = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        acquired = bool(locked.scalar())
        connection.commit()
        if acquired:
            break
        if clock() >= deadline:
            raise _timeout(wait)
        if not waited:
            _waiting(wait)
            waited = True
        sleep(_POLL_SECONDS)
    try:
        yield
    finally:
        try:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
        except Exception:
            # The session may still hold the lock: never hand it back to the pool.
            connection.invalidate()
            raise


@contextlib.contextmanager
def _exclusive_sqlite(
    connection: Connection, wait: float, clock: Callable[[], float], sleep: Callable[[float], None]
) -> Iterator[None]:
    # pysqlite leaves DDL outside transactions unless one was begun explicitly (and, since Python
    # 3.6, never commits one before DDL): BEGIN EXCLUSIVE holds every statement that follows.
    _begin_exclusive(connection, wait, clock, sleep)
    try:
        yield
    except BaseException:
        connection.rollback()
        raise
    connection.commit()


def _begin_exclusive(
    connection: Connection, wait: float, clock: Callable[[], float], sleep: Callable[[float], None]
) -> None:
    deadline = clock() + wait
    busy_ms = int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
    try:
        # The first try does not wait, so that a process that has to wait says so before it does.
        connection.exec_driver_sql("PRAGMA busy_timeout = 0")
        if _try_begin_exclusive(connection):
            return
        _waiting(wait)
        while True:
            remaining_ms = int((deadline - clock()) * 1000)
            if remaining_ms <= 0:
                raise _timeout(wait)
            # Each try waits in SQLite's busy handler, at most the connection's own busy timeout.
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {min(busy_ms, remaining_ms)}")
            if _try_begin_exclusive(connection):
                return
            if busy_ms == 0:
                sleep(_POLL_SECONDS)
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")


def _try_begin_exclusive(connection: Connection) -> bool:
    try:
        connection.exec_driver_sql("BEGIN EXCLUSIVE")
    except OperationalError as exc:
        connection.rollback()
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise
    return True
