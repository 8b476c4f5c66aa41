"""Indexes for the administrators' listings and reports (gateway_app.queries).

Listings filter by team, status or server/tool and read newest first; the reports aggregate a
period of tool calls or model requests. ``ix_tool_calls_activity`` and ``ix_model_requests_spend``
hold every column those aggregates read, so SQLite answers them from the index alone
(benchmarks/reports.py: every report within 1 s on 1,000,000 rows of each table).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_tool_calls_team_time": ("tool_calls", ["team", "timestamp"]),
    "ix_tool_calls_status_time": ("tool_calls", ["status", "timestamp"]),
    "ix_tool_calls_server_tool_time": ("tool_calls", ["server", "tool", "timestamp"]),
    "ix_tool_calls_activity": (
        "tool_calls",
        ["timestamp", "key_id", "team", "server", "tool", "status", "client_name"],
    ),
    "ix_model_requests_status_time": ("model_requests", ["status", "timestamp"]),
    "ix_model_requests_spend": (
        "model_requests",
        [
            "timestamp", "key_id", "team", "provider", "served_model", "requested_model", "status",
            "cost_usd", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        ],
    ),
}  # fmt: skip


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _columns) in INDEXES.items():
        op.drop_index(name, table_name=table)
