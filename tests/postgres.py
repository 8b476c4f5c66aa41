"""A PostgreSQL database of a test's own: created on the machine's server, dropped afterwards.

The server is ``MCPGW_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432``, trust
auth). Where it cannot be reached the test is skipped with a loud reason, except with ``CI=true``:
CI has the server, so there a skip would hide a broken set-up, and the test fails instead.

Use the ``postgres_database`` fixture (tests/conftest.py), or `scratch_database` with a prefix of
your own; a database is named ``<prefix>_<random hex>`` and dropped even if connections are left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

SERVER_URL = os.environ.get("MCPGW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
MAINTENANCE_DATABASE = "postgres"


def unavailable(reason: str) -> NoReturn:
    message = f"PostgreSQL NOT TESTED: {reason} (server {SERVER_URL}, set MCPGW_TEST_POSTGRES)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true, where PostgreSQL must be reachable")
    pytest.skip(message)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(f"{SERVER_URL}/{MAINTENANCE_DATABASE}", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"cannot connect: {str(exc).strip().splitlines()[0]}")


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new empty database; yields its URL (``postgresql://...``) and drops it afterwards."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{SERVER_URL}/{name}"
    finally:
        with _admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
