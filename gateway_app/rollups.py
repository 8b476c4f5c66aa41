"""Daily rollups of the audit log and the spend ledger, so that reports over weeks and months read
thousands of rows instead of a million.

Six tables, one row per UTC day (or month) and combination of what the reports group or filter by:

- ``usage_daily`` (model requests): key, team, provider, model (the served one, else the requested
  one) with requests, tokens and cost: spend by key, top keys' model side, budgets;
- ``spend_daily``: the same without the key (a few rows a day): spend by team, model, provider;
- ``tool_calls_daily`` (audit rows): key, team, kind, status with calls: top keys' tool side and
  "tool calls today";
- ``tool_usage_daily`` (audit rows naming a tool): server, tool, team, client with calls, ok,
  refused and the last call, and ``tool_keys_monthly``: which keys called it on which days of a
  month (a bit per day): the tools report and its distinct keys. Per key and day this would be
  half as many rows as there are calls (keys call many tools a few times a day);
- ``refusals_daily`` (both, refused rows only: `policies.outcomes.REFUSALS`): surface, key, team,
  status, limit (``blocked_by``) with refusals, first and last: the limits report.

They are kept by the database itself: triggers (revision 0009) add every inserted row in the same
statement, whoever inserts it (the batch writers, their fallback file's replay, an import, a test),
so a rollup can never disagree with the rows beside it, and a batch that fails or a process killed
mid-batch rolls both back together. SQLite runs a row trigger (an UPDATE, then an INSERT when no
row matched: SQLite has one writer at a time); PostgreSQL a statement trigger that aggregates the
statement's new rows and upserts them (``ON CONFLICT`` on a ``NULLS NOT DISTINCT`` unique index, so
PostgreSQL 15 or newer), sorted. A multi-row statement or COPY is one upsert per rollup row; the
writers' executemany sends one statement per row, so two gateways whose batches share rollup
rows may deadlock: PostgreSQL breaks it and the writer retries the batch (`store_rows`, three
tries, then the fallback file).

Reports (`gateway_app.queries.rollup_reads`) read whole UTC days from the rollups and the partial
days at a period's ends from the rows, so every answer equals the one the rows alone give.

Retention deletes rows only; rollups are kept (one row per day and combination, a few megabytes a
year). So after a prune, a report over days older than the retention still answers from the
rollups, while listings (which read the rows) show nothing that old; a period starting inside a
pruned day gets that day's partial start from the (now absent) rows.

Measured with benchmarks/reports.py (1,000,000 rows of each table over 90 days, a 2-core machine
under load 4-9, p50 of five runs): with the covering indexes alone (revision 0003) 30-day reports
took 0.2-0.9 s (SQLite) and up to 1.9 s (PostgreSQL), 90-day ones 1.2-2.3 s and 1.3-4.5 s: reading
a million index entries takes that long whatever the plan. With the rollups every dashboard
question answers in under 100 ms, every report in under 250 ms but the 90-day tools report
(331 ms SQLite, 189 ms PostgreSQL). Rollup rows for those 2,000,000: usage 164,178, spend 8,865,
tool calls 81,193, tool usage 100,325, tool keys 108,998, refusals 46,884. Per key and day the
tool usage had 525,662 rows and the 90-day tools report took 2.5 s: hence no key in it, and the
monthly day bits for the keys. The cost is on the writers (benchmarks/writer_rollups.py): audit
rows 16,700/s without the triggers, 4,600/s with them (SQLite); 14,100/s and 5,600/s (PostgreSQL).

A migration that rebuilds ``tool_calls`` or ``model_requests`` in SQLite (Alembic's batch mode)
drops their triggers with the old table and must create them again (a test checks they exist).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer
from sqlmodel import Field, SQLModel

ROLLUP_TRIGGERS = (
    "rollup_model_requests",
    "rollup_tool_calls",
)
"""The triggers revision 0009 creates (SQLite splits each into one per rollup table it feeds)."""


def _id() -> Column[int]:
    # INTEGER PRIMARY KEY is SQLite's rowid (filled in by itself); BIGINT elsewhere: PostgreSQL's
    # sequence also advances on upserts that update.
    return Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)


def _count() -> Column[int]:
    return Column(BigInteger(), nullable=False)


class UsageDaily(SQLModel, table=True):
    """Model requests per UTC day, key, team, provider and model (refused requests included)."""

    __tablename__ = "usage_daily"
    __table_args__ = (
        Index(
            "ux_usage_daily",
            "day",
            "key_id",
            "team",
            "provider",
            "model",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    day: str = Field(max_length=10, description="The UTC day, YYYY-MM-DD.")
    key_id: str
    team: str | None = None
    provider: str | None = None
    model: str | None = Field(default=None, description="served_model, else requested_model.")
    requests: int = Field(sa_column=_count())
    input_tokens: int = Field(sa_column=_count())
    output_tokens: int = Field(sa_column=_count())
    cache_read_tokens: int = Field(sa_column=_count())
    cache_write_tokens: int = Field(sa_column=_count())
    cost_usd: float


class SpendDaily(SQLModel, table=True):
    """`UsageDaily` without the key: per UTC day, team, provider and model, a few rows a day for
    spend by team, model or provider."""

    __tablename__ = "spend_daily"
    __table_args__ = (
        Index(
            "ux_spend_daily",
            "day",
            "team",
            "provider",
            "model",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    day: str = Field(max_length=10, description="The UTC day, YYYY-MM-DD.")
    team: str | None = None
    provider: str | None = None
    model: str | None = Field(default=None, description="served_model, else requested_model.")
    requests: int = Field(sa_column=_count())
    input_tokens: int = Field(sa_column=_count())
    output_tokens: int = Field(sa_column=_count())
    cache_read_tokens: int = Field(sa_column=_count())
    cache_write_tokens: int = Field(sa_column=_count())
    cost_usd: float


class ToolCallsDaily(SQLModel, table=True):
    """Audit rows (tool calls, resource reads, prompts, completions) per UTC day, key, team, kind
    and status."""

    __tablename__ = "tool_calls_daily"
    __table_args__ = (
        Index(
            "ux_tool_calls_daily",
            "day",
            "key_id",
            "team",
            "kind",
            "status",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    day: str = Field(max_length=10, description="The UTC day, YYYY-MM-DD.")
    key_id: str
    team: str | None = None
    kind: str
    status: str
    calls: int = Field(sa_column=_count())


class ToolUsageDaily(SQLModel, table=True):
    """Audit rows naming a tool (or prompt, or resource) per UTC day, server, tool, team and client:
    how often, answered, refused, and the last one. No key: that would multiply its rows by the
    keys (`ToolKeysMonthly` says which keys)."""

    __tablename__ = "tool_usage_daily"
    __table_args__ = (
        Index(
            "ux_tool_usage_daily",
            "day",
            "server",
            "tool",
            "team",
            "client_name",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    day: str = Field(max_length=10, description="The UTC day, YYYY-MM-DD.")
    server: str | None = None
    tool: str
    team: str | None = None
    client_name: str | None = None
    calls: int = Field(sa_column=_count())
    ok: int = Field(sa_column=_count())
    refused: int = Field(sa_column=_count())
    last_at: datetime


class ToolKeysMonthly(SQLModel, table=True):
    """Which keys called which tool (from which team and client) on which days of a UTC month: bit
    ``n - 1`` of ``days`` stands for day ``n``. A tool's distinct keys over any run of whole days
    read one row per key and month, not per key and day."""

    __tablename__ = "tool_keys_monthly"
    __table_args__ = (
        Index(
            "ux_tool_keys_monthly",
            "month",
            "server",
            "tool",
            "key_id",
            "team",
            "client_name",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    month: str = Field(max_length=7, description="The UTC month, YYYY-MM.")
    server: str | None = None
    tool: str
    key_id: str
    team: str | None = None
    client_name: str | None = None
    days: int = Field(sa_column=_count())


class RefusalsDaily(SQLModel, table=True):
    """Refused tool calls and model requests (denied, invalid, rate limited, over budget) per UTC
    day, surface, key, team, status and the limit that refused."""

    __tablename__ = "refusals_daily"
    __table_args__ = (
        Index(
            "ux_refusals_daily",
            "day",
            "surface",
            "key_id",
            "team",
            "status",
            "blocked_by",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    day: str = Field(max_length=10, description="The UTC day, YYYY-MM-DD.")
    surface: str = Field(max_length=8, description="tools or models.")
    key_id: str
    team: str | None = None
    status: str
    blocked_by: str | None = None
    refusals: int = Field(sa_column=_count())
    first_at: datetime
    last_at: datetime


ROLLUP_MODELS = (UsageDaily, SpendDaily, ToolCallsDaily, ToolUsageDaily, ToolKeysMonthly, RefusalsDaily)
