"""The rollup tables (the models; revision 0009 creates them). `gateway_common.rollups` says what each
holds and why; `upkeep` keeps them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer
from sqlmodel import Field, SQLModel


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
