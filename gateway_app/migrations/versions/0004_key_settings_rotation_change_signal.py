"""api_keys: a database key's own settings and rotation; key_changes: the signal gateways poll.

``api_keys`` gains the settings a file key has (allowed models, rate limit, budget, tool
permissions, as JSON in the policy file's shapes; null inherits) and ``grace_until`` (a secret
replaced by ``keys rotate`` works until then). ``key_changes`` holds one row whose ``version`` every
key change increments, so gateways notice a revocation within a second.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rate_limit", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("budget", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tool_permissions", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("grace_until", sa.DateTime(timezone=True), nullable=True))
    changes = op.create_table(
        "key_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(changes, [{"id": 1, "version": 0, "changed_at": None}])


def downgrade() -> None:
    op.drop_table("key_changes")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("grace_until")
        batch.drop_column("tool_permissions")
        batch.drop_column("budget")
        batch.drop_column("rate_limit")
        batch.drop_column("allowed_models")
