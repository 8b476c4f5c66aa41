"""Daily rollups of tool_calls and model_requests, kept by triggers, filled from the rows already there.

``usage_daily``, ``tool_calls_daily``, ``tool_usage_daily`` and ``refusals_daily``
(`gateway_app.rollups` says what each holds and why). The triggers add every inserted row to them
in the same statement: SQLite one row trigger per rollup (UPDATE the day's row, INSERT it when
there was none), PostgreSQL one statement trigger per table that aggregates the statement's new
rows and upserts them, sorted (ON CONFLICT on NULLS NOT DISTINCT indexes: PostgreSQL 15+).

The triggers are created before the backfill, inside the migration's one transaction: on
PostgreSQL creating them locks the tables against inserts until the commit, and SQLite has one
writer, so no row is counted twice or missed by a gateway still writing meanwhile.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSALS = "('denied', 'invalid_request', 'rate_limited', 'budget_exceeded')"
"""policies.outcomes.REFUSALS, as of this revision."""
UTC_TEXT = {
    # SQLite keeps UTC timestamps as ISO text; PostgreSQL's timestamptz is read in UTC.
    "sqlite": 'substr({r}"timestamp", 1, {n})',
    "postgresql": "to_char({r}\"timestamp\" AT TIME ZONE 'UTC', '{format}')",
}
FORMATS = {"{day}": (10, "YYYY-MM-DD"), "{month}": (7, "YYYY-MM")}
DAY_BIT = {
    # A month's day n as bit n - 1.
    "sqlite": '(CAST(1 AS BIGINT) << (CAST(substr({r}"timestamp", 9, 2) AS INTEGER) - 1))',
    "postgresql": "(CAST(1 AS BIGINT) << "
    "(CAST(extract(day FROM {r}\"timestamp\" AT TIME ZONE 'UTC') AS INTEGER) - 1))",
}


class Measure(NamedTuple):
    column: str
    aggregate: str
    """count, sum, min, max or bits (OR of single bits: sum of the distinct ones)."""
    expression: str = ""
    """Of the inserted row's columns, each written {r}column."""


class Rollup(NamedTuple):
    table: str
    source: str
    dimensions: tuple[tuple[str, str], ...]
    """(rollup column, expression of the row) in the unique index's order; the first is the day."""
    measures: tuple[Measure, ...]
    where: str = ""
    """Which rows it counts (an expression of the row); every row when empty."""


def _sum(column: str, expression: str | None = None) -> Measure:
    return Measure(column, "sum", expression or "{r}" + column)


ROLLUPS = (
    Rollup(
        "usage_daily",
        "model_requests",
        (
            ("day", "{day}"),
            ("key_id", "{r}key_id"),
            ("team", "{r}team"),
            ("provider", "{r}provider"),
            ("model", "coalesce({r}served_model, {r}requested_model)"),
        ),
        (
            Measure("requests", "count"),
            _sum("input_tokens"),
            _sum("output_tokens"),
            _sum("cache_read_tokens"),
            _sum("cache_write_tokens"),
            _sum("cost_usd"),
        ),
    ),
    Rollup(
        "spend_daily",
        "model_requests",
        (
            ("day", "{day}"),
            ("team", "{r}team"),
            ("provider", "{r}provider"),
            ("model", "coalesce({r}served_model, {r}requested_model)"),
        ),
        (
            Measure("requests", "count"),
            _sum("input_tokens"),
            _sum("output_tokens"),
            _sum("cache_read_tokens"),
            _sum("cache_write_tokens"),
            _sum("cost_usd"),
        ),
    ),
    Rollup(
        "tool_calls_daily",
        "tool_calls",
        (
            ("day", "{day}"),
            ("key_id", "{r}key_id"),
            ("team", "{r}team"),
            ("kind", "{r}kind"),
            ("status", "{r}status"),
        ),
        (Measure("calls", "count"),),
    ),
    Rollup(
        "tool_usage_daily",
        "tool_calls",
        (
            ("day", "{day}"),
            ("server", "{r}server"),
            ("tool", "{r}tool"),
            ("team", "{r}team"),
            ("client_name", "{r}client_name"),
        ),
        (
            Measure("calls", "count"),
            _sum("ok", "CASE WHEN {r}status = 'ok' THEN 1 ELSE 0 END"),
            _sum("refused", f"CASE WHEN {{r}}status IN {REFUSALS} THEN 1 ELSE 0 END"),
            Measure("last_at", "max", '{r}"timestamp"'),
        ),
        "{r}tool IS NOT NULL",
    ),
    Rollup(
        "tool_keys_monthly",
        "tool_calls",
        (
            ("month", "{month}"),
            ("server", "{r}server"),
            ("tool", "{r}tool"),
            ("key_id", "{r}key_id"),
            ("team", "{r}team"),
            ("client_name", "{r}client_name"),
        ),
        (Measure("days", "bits", "{day_bit}"),),
        "{r}tool IS NOT NULL",
    ),
    *(
        Rollup(
            "refusals_daily",
            source,
            (
                ("day", "{day}"),
                ("surface", f"'{surface}'"),
                ("key_id", "{r}key_id"),
                ("team", "{r}team"),
                ("status", "{r}status"),
                ("blocked_by", "{r}blocked_by"),
            ),
            (
                Measure("refusals", "count"),
                Measure("first_at", "min", '{r}"timestamp"'),
                Measure("last_at", "max", '{r}"timestamp"'),
            ),
            f"{{r}}status IN {REFUSALS}",
        )
        for source, surface in (("tool_calls", "tools"), ("model_requests", "models"))
    ),
)


def _expr(text: str, dialect: str, row: str) -> str:
    for name, (length, pattern) in FORMATS.items():
        text = text.replace(name, UTC_TEXT[dialect].replace("{n}", str(length)).replace("{format}", pattern))
    return text.replace("{day_bit}", DAY_BIT[dialect]).replace("{r}", row)


def aggregate_select(rollup: Rollup, dialect: str, source: str) -> str:
    """SELECT the rollup's rows from ``source`` (the table, or a trigger's new rows), sorted."""
    dims = [_expr(expression, dialect, "") for _, expression in rollup.dimensions]
    values = []
    for measure in rollup.measures:
        if measure.aggregate == "count":
            values.append("count(*)")
        elif measure.aggregate == "bits":  # SQLite has no bit_or(); distinct single bits add up to it
            values.append(f"sum(DISTINCT {_expr(measure.expression, dialect, '')})")
        else:
            values.append(f"{measure.aggregate}({_expr(measure.expression, dialect, '')})")
    where = f" WHERE {_expr(rollup.where, dialect, '')}" if rollup.where else ""
    positions = ", ".join(str(n + 1) for n in range(len(dims)))
    return f"SELECT {', '.join(dims + values)} FROM {source}{where} GROUP BY {positions} ORDER BY {positions}"


def _columns(rollup: Rollup) -> str:
    return ", ".join([name for name, _ in rollup.dimensions] + [m.column for m in rollup.measures])


def _combine(measure: Measure, old: str, new: str, dialect: str) -> str:
    if measure.aggregate in ("count", "sum"):
        return f"{old} + {new}"
    if measure.aggregate == "bits":
        return f"{old} | {new}"
    if dialect == "sqlite":  # SQLite's two-argument min() and max() are scalar
        return f"{measure.aggregate}({old}, {new})"
    return f"{'least' if measure.aggregate == 'min' else 'greatest'}({old}, {new})"


def sqlite_trigger(rollup: Rollup) -> tuple[str, str]:
    """(name, CREATE TRIGGER) adding each inserted row: UPDATE its day's row, else INSERT one."""
    name = f"rollup_{rollup.source}_{rollup.table}"
    never_null = ("day", "month", "key_id", "surface")
    match = " AND ".join(
        f"{column} {'=' if column in never_null else 'IS'} {_expr(e, 'sqlite', 'NEW.')}"
        for column, e in rollup.dimensions
    )
    values = {
        m.column: "1" if m.aggregate == "count" else _expr(m.expression, "sqlite", "NEW.")
        for m in rollup.measures
    }
    sets = ", ".join(
        f"{m.column} = {_combine(m, m.column, values[m.column], 'sqlite')}" for m in rollup.measures
    )
    firsts = [_expr(e, "sqlite", "NEW.") for _, e in rollup.dimensions] + list(values.values())
    when = f" WHEN {_expr(rollup.where, 'sqlite', 'NEW.')}" if rollup.where else ""
    return name, (
        f"CREATE TRIGGER {name} AFTER INSERT ON {rollup.source}{when} BEGIN "
        f"UPDATE {rollup.table} SET {sets} WHERE {match}; "
        f"INSERT INTO {rollup.table} ({_columns(rollup)}) SELECT {', '.join(firsts)} WHERE changes() = 0; "
        "END"
    )


def postgresql_upsert(rollup: Rollup) -> str:
    """One statement adding a trigger's new rows (``new_rows``) to the rollup."""
    keys = ", ".join(name for name, _ in rollup.dimensions)
    sets = ", ".join(
        f"{m.column} = {_combine(m, 'r.' + m.column, 'EXCLUDED.' + m.column, 'postgresql')}"
        for m in rollup.measures
    )
    return (
        f"INSERT INTO {rollup.table} AS r ({_columns(rollup)}) "
        f"{aggregate_select(rollup, 'postgresql', 'new_rows')} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {sets}"
    )


def postgresql_trigger(source: str) -> tuple[str, list[str]]:
    """(name, statements) of the statement trigger feeding every rollup of ``source``."""
    name = f"rollup_{source}"
    body = "; ".join(postgresql_upsert(rollup) for rollup in ROLLUPS if rollup.source == source)
    return name, [
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; END $$",
        f"CREATE TRIGGER {name} AFTER INSERT ON {source} REFERENCING NEW TABLE AS new_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()",
    ]


def _id() -> sa.Column[int]:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
    )


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


TABLES: dict[str, list[sa.Column[Any]]] = {
    "usage_daily": [
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("model", sa.String(), nullable=True),
        _count("requests"),
        _count("input_tokens"),
        _count("output_tokens"),
        _count("cache_read_tokens"),
        _count("cache_write_tokens"),
        sa.Column("cost_usd", sa.Float(), nullable=False),
    ],
    "spend_daily": [
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("model", sa.String(), nullable=True),
        _count("requests"),
        _count("input_tokens"),
        _count("output_tokens"),
        _count("cache_read_tokens"),
        _count("cache_write_tokens"),
        sa.Column("cost_usd", sa.Float(), nullable=False),
    ],
    "tool_calls_daily": [
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _count("calls"),
    ],
    "tool_usage_daily": [
        sa.Column("server", sa.String(), nullable=True),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("client_name", sa.String(), nullable=True),
        _count("calls"),
        _count("ok"),
        _count("refused"),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    ],
    "tool_keys_monthly": [
        sa.Column("server", sa.String(), nullable=True),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("client_name", sa.String(), nullable=True),
        _count("days"),
    ],
    "refusals_daily": [
        sa.Column("surface", sa.String(length=8), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("blocked_by", sa.String(), nullable=True),
        _count("refusals"),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    ],
}


def _unique_columns(table: str) -> list[str]:
    return [name for name, _ in next(r for r in ROLLUPS if r.table == table).dimensions]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, columns in TABLES.items():
        bucket = _unique_columns(table)[0]  # day, or month
        op.create_table(
            table,
            _id(),
            sa.Column(bucket, sa.String(length=10 if bucket == "day" else 7), nullable=False),
            *columns,
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(
            f"ux_{table}", table, _unique_columns(table), unique=True, postgresql_nulls_not_distinct=True
        )
    if dialect == "postgresql":
        for source in ("model_requests", "tool_calls"):
            for statement in postgresql_trigger(source)[1]:
                op.execute(statement)
    else:
        for rollup in ROLLUPS:
            op.execute(sqlite_trigger(rollup)[1])
    # Backfill: the rollups are empty (inserts wait for this transaction), so plain INSERTs.
    for rollup in ROLLUPS:
        select = aggregate_select(rollup, dialect, rollup.source)
        op.execute(f"INSERT INTO {rollup.table} ({_columns(rollup)}) {select}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for source in ("model_requests", "tool_calls"):
            op.execute(f"DROP TRIGGER IF EXISTS rollup_{source} ON {source}")
            op.execute(f"DROP FUNCTION IF EXISTS rollup_{source}()")
    else:
        for rollup in ROLLUPS:
            op.execute(f"DROP TRIGGER IF EXISTS {sqlite_trigger(rollup)[0]}")
    for table in reversed(TABLES):
        op.drop_index(f"ux_{table}", table_name=table)
        op.drop_table(table)
