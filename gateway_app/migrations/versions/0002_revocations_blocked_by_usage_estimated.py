"""Added before migrations: file_key_revocations, tool_calls.blocked_by, model_requests.usage_estimated.

The releases after the first added them with create_all and add_missing_columns, and databases from
the releases in between hold any subset of the three, so each is added only where it is missing.
Revisions after this one are ordinary: every database that reaches them is versioned.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _has_column(table: str, column: str) -> bool:
    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table("file_key_revocations"):
        op.create_table(
            "file_key_revocations",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("key_id", sa.String(length=128), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("key_id"),
        )
    if not _has_column("tool_calls", "blocked_by"):
        with op.batch_alter_table("tool_calls") as batch:
            batch.add_column(sa.Column("blocked_by", sa.String(), nullable=True))
    if not _has_column("model_requests", "usage_estimated"):
        with op.batch_alter_table("model_requests") as batch:
            batch.add_column(sa.Column("usage_estimated", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_requests") as batch:
        batch.drop_column("usage_estimated")
    with op.batch_alter_table("tool_calls") as batch:
        batch.drop_column("blocked_by")
    op.drop_table("file_key_revocations")
