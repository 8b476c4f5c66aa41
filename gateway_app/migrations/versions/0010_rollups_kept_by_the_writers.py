"""The rollups are kept by whoever inserts the rows (`gateway_common.rollups.upkeep`), not by triggers.

Revision 0009's triggers ran once per inserted row (the writers' executemany is one statement per
row on both engines): three to four extra UPDATEs per audit row, which took the SQLite audit writer
from 16,700 to 4,600 rows a second and cost a serving gateway about 0.16 ms of CPU per tools/call.
The writers now fold each batch into one delta per rollup row in the batch's own transaction.
The rollups' contents do not change here. Downgrading creates the triggers again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = ("model_requests", "tool_calls")


def _previous() -> object:
    return importlib.import_module("gateway_app.migrations.versions.0009_rollups")


def upgrade() -> None:
    # On PostgreSQL, DROP TRIGGER locks the table until the commit: no row is inserted between the
    # triggers going and a writer of this release taking over (an older replica still running
    # would stop counting its rows: upgrade all replicas together, as for any revision).
    if op.get_bind().dialect.name == "postgresql":
        for source in SOURCES:
            op.execute(f"DROP TRIGGER IF EXISTS rollup_{source} ON {source}")
            op.execute(f"DROP FUNCTION IF EXISTS rollup_{source}()")
    else:
        previous = _previous()
        for rollup in previous.ROLLUPS:  # type: ignore[attr-defined]
            op.execute(f"DROP TRIGGER IF EXISTS {previous.sqlite_trigger(rollup)[0]}")  # type: ignore[attr-defined]


def downgrade() -> None:
    previous = _previous()
    if op.get_bind().dialect.name == "postgresql":
        for source in SOURCES:
            for statement in previous.postgresql_trigger(source)[1]:  # type: ignore[attr-defined]
                op.execute(statement)
    else:
        for rollup in previous.ROLLUPS:  # type: ignore[attr-defined]
            op.execute(previous.sqlite_trigger(rollup)[1])  # type: ignore[attr-defined]
