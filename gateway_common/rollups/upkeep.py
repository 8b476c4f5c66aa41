"""Adding inserted rows to the daily rollups, in the transaction that inserts them.

Whoever puts audit or ledger rows into the database does it through `insert_rows` (the batch
writers, their fallback file's replay, tests and seeders): it inserts the rows, folds them into one
delta per rollup row in Python, and applies the deltas, all in the caller's transaction, so a
rollup never disagrees with the rows beside it and a failed batch rolls both back together.

Why not triggers (revision 0009 had them; 0010 drops them): a row trigger runs once per inserted
row, and the writers' ``executemany`` is one statement per row on both engines, so every audit row
cost three to four extra UPDATEs: the SQLite audit writer went from 16,700 to 4,600 rows/s, about
0.16 ms of CPU per tools/call on the core the gateway shares. A batch of a serving gateway holds
a few keys and tools, so folding it first makes a few statements per batch instead.

Applying a delta: PostgreSQL upserts all of a rollup's deltas in one statement (``ON CONFLICT`` on
the ``NULLS NOT DISTINCT`` unique index), sorted, so two replicas lock rollup rows in the same
order and never deadlock. SQLite has one writer at a time and its unique indexes keep NULLs
distinct, so it updates the matching row (``IS`` for columns that may be NULL) and inserts one when
none matched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select

from gateway_common.rollups.tables import (
    RefusalsDaily,
    SpendDaily,
    ToolCallsDaily,
    ToolKeysMonthly,
    ToolUsageDaily,
    UsageDaily,
)
from policies.outcomes import REFUSALS

Row = Mapping[str, Any]
SOURCES = ("tool_calls", "model_requests")
"""The tables whose rows the rollups count."""
_REFUSED = frozenset(str(outcome) for outcome in REFUSALS)


def _utc(stamp: datetime) -> datetime:
    # Rows carry timezone-aware UTC datetimes; a naive one is taken as UTC (as SQLite stores it).
    return stamp.astimezone(UTC) if stamp.tzinfo is not None else stamp


def _day(row: Row) -> str:
    return _utc(row["timestamp"]).strftime("%Y-%m-%d")


def _month(row: Row) -> str:
    return _utc(row["timestamp"]).strftime("%Y-%m")


def _day_bit(row: Row) -> int:
    """A month's day n as bit n - 1 (`ToolKeysMonthly.days`)."""
    return 1 << (_utc(row["timestamp"]).day - 1)


def _model(row: Row) -> Any:
    served = row.get("served_model")
    return served if served is not None else row.get("requested_model")


def _get(name: str) -> Callable[[Row], Any]:
    return lambda row: row.get(name)


@dataclass(frozen=True)
class Measure:
    column: str
    fold: str
    """count, sum, min, max or bits (OR)."""
    value: Callable[[Row], Any] = lambda row: 1


@dataclass(frozen=True)
class Rollup:
    table: Table
    source: str
    dimensions: tuple[tuple[str, Callable[[Row], Any]], ...]
    """(column, value of a row), in the unique index's order."""
    measures: tuple[Measure, ...]
    counts: Callable[[Row], bool] = lambda row: True
    nullable: frozenset[str] = frozenset()
    """Dimensions that may be NULL (matched with IS in SQLite)."""


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def _sums(*columns: str) -> tuple[Measure, ...]:
    return tuple(Measure(column, "sum", _get(column)) for column in columns)


_USAGE = (
    Measure("requests", "count"),
    *_sums("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd"),
)


def _names_tool(row: Row) -> bool:
    return row.get("tool") is not None


def _is_refusal(row: Row) -> bool:
    return str(row["status"]) in _REFUSED


ROLLUPS: tuple[Rollup, ...] = (
    Rollup(
        _table(UsageDaily),
        "model_requests",
        (
            ("day", _day),
            ("key_id", _get("key_id")),
            ("team", _get("team")),
            ("provider", _get("provider")),
            ("model", _model),
        ),
        _USAGE,
        nullable=frozenset({"team", "provider", "model"}),
    ),
    Rollup(
        _table(SpendDaily),
        "model_requests",
        (("day", _day), ("team", _get("team")), ("provider", _get("provider")), ("model", _model)),
        _USAGE,
        nullable=frozenset({"team", "provider", "model"}),
    ),
    Rollup(
        _table(ToolCallsDaily),
        "tool_calls",
        (
            ("day", _day),
            ("key_id", _get("key_id")),
            ("team", _get("team")),
            ("kind", lambda row: row.get("kind") or "tool"),
            ("status", lambda row: str(row["status"])),
        ),
        (Measure("calls", "count"),),
        nullable=frozenset({"team"}),
    ),
    Rollup(
        _table(ToolUsageDaily),
        "tool_calls",
        (
            ("day", _day),
            ("server", _get("server")),
            ("tool", _get("tool")),
            ("team", _get("team")),
            ("client_name", _get("client_name")),
        ),
        (
            Measure("calls", "count"),
            Measure("ok", "sum", lambda row: 1 if str(row["status"]) == "ok" else 0),
            Measure("refused", "sum", lambda row: 1 if _is_refusal(row) else 0),
            Measure("last_at", "max", _get("timestamp")),
        ),
        _names_tool,
        nullable=frozenset({"server", "team", "client_name"}),
    ),
    Rollup(
        _table(ToolKeysMonthly),
        "tool_calls",
        (
            ("month", _month),
            ("server", _get("server")),
            ("tool", _get("tool")),
            ("key_id", _get("key_id")),
            ("team", _get("team")),
            ("client_name", _get("client_name")),
        ),
        (Measure("days", "bits", _day_bit),),
        _names_tool,
        nullable=frozenset({"server", "team", "client_name"}),
    ),
    *(
        Rollup(
            _table(RefusalsDaily),
            source,
            (
                ("day", _day),
                ("surface", lambda row, surface=surface: surface),  # type: ignore[misc]
                ("key_id", _get("key_id")),
                ("team", _get("team")),
                ("status", lambda row: str(row["status"])),
                ("blocked_by", _get("blocked_by")),
            ),
            (
                Measure("refusals", "count"),
                Measure("first_at", "min", _get("timestamp")),
                Measure("last_at", "max", _get("timestamp")),
            ),
            _is_refusal,
            nullable=frozenset({"team", "blocked_by"}),
        )
        for source, surface in (("tool_calls", "tools"), ("model_requests", "models"))
    ),
)


def _fold(kind: str, old: Any, new: Any) -> Any:
    if kind in ("count", "sum"):
        return old + new
    if kind == "bits":
        return old | new
    return min(old, new) if kind == "min" else max(old, new)


def deltas(rollup: Rollup, rows: Iterable[Row]) -> dict[tuple[Any, ...], list[Any]]:
    """The rows folded per rollup row: {dimension values: measure values}, in the rows' order (so a
    sum adds up as the database's own sum over them would)."""
    found: dict[tuple[Any, ...], list[Any]] = {}
    dimensions, measures, counts = rollup.dimensions, rollup.measures, rollup.counts
    for row in rows:
        if not counts(row):
            continue
        key = tuple(value(row) for _, value in dimensions)
        values = [measure.value(row) for measure in measures]
        held = found.get(key)
        if held is None:
            found[key] = values
        else:
            for index, measure in enumerate(measures):
                held[index] = _fold(measure.fold, held[index], values[index])
    return found


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    return tuple((value is not None, "" if value is None else value) for value in key)


def _combined(measure: Measure, old: str, new: str, dialect: str) -> str:
    if measure.fold in ("count", "sum"):
        return f"{old} + {new}"
    if measure.fold == "bits":
        return f"{old} | {new}"
    if dialect == "sqlite":  # SQLite's two-argument min() and max() are scalar
        return f"{measure.fold}({old}, {new})"
    return f"{'least' if measure.fold == 'min' else 'greatest'}({old}, {new})"


@dataclass(frozen=True)
class _Statements:
    """A rollup's SQL for one dialect, written once: executemany of it costs no Python per row."""

    update: str = ""
    insert_missing: str = ""
    upsert: str = ""

    @classmethod
    def for_rollup(cls, rollup: Rollup, dialect: str) -> _Statements:
        table = rollup.table.name
        dims = [name for name, _ in rollup.dimensions]
        columns = ", ".join(dims + [m.column for m in rollup.measures])
        if dialect == "postgresql":
            sets = ", ".join(
                f"{m.column} = {_combined(m, 'r.' + m.column, 'EXCLUDED.' + m.column, dialect)}"
                for m in rollup.measures
            )
            marks = ", ".join("%s" for _ in range(len(dims) + len(rollup.measures)))
            return cls(
                upsert=f"INSERT INTO {table} AS r ({columns}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(dims)}) DO UPDATE SET {sets}"
            )
        match = " AND ".join(f"{name} {'IS' if name in rollup.nullable else '='} ?" for name in dims)
        sets = ", ".join(f"{m.column} = {_combined(m, m.column, '?', dialect)}" for m in rollup.measures)
        marks = ", ".join("?" for _ in range(len(dims) + len(rollup.measures)))
        return cls(
            update=f"UPDATE {table} SET {sets} WHERE {match}",
            insert_missing=f"INSERT INTO {table} ({columns}) SELECT {marks} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {match})",
        )


_STATEMENTS: dict[tuple[str, str, str], _Statements] = {}


def _statements(rollup: Rollup, dialect: str) -> _Statements:
    key = (rollup.table.name, rollup.source, dialect)
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = _Statements.for_rollup(rollup, dialect)
    return found


def _bind(rollup: Rollup, conn: Connection) -> Callable[[list[Any]], list[Any]]:
    """The measures as the driver takes them (SQLite's datetimes as SQLAlchemy stores them: text)."""
    dialect = conn.dialect
    processors = [
        rollup.table.c[m.column].type.dialect_impl(dialect).bind_processor(dialect) for m in rollup.measures
    ]
    if not any(processors):
        return lambda values: values
    return lambda values: [p(v) if p is not None else v for p, v in zip(processors, values, strict=True)]


def _apply_postgresql(conn: Connection, rollup: Rollup, found: dict[tuple[Any, ...], list[Any]]) -> None:
    # Sorted: two replicas upserting overlapping rollup rows lock them in the same order.
    statements = _statements(rollup, "postgresql")
    rows = [(*key, *found[key]) for key in sorted(found, key=_sort_key)]
    conn.exec_driver_sql(statements.upsert, rows)


def _apply_sqlite(conn: Connection, rollup: Rollup, found: dict[tuple[Any, ...], list[Any]]) -> None:
    statements, bind = _statements(rollup, "sqlite"), _bind(rollup, conn)
    updates: list[tuple[Any, ...]] = []
    inserts: list[tuple[Any, ...]] = []
    for key, values in found.items():
        bound = bind(values)
        updates.append((*bound, *key))
        inserts.append((*key, *bound, *key))
    updated = conn.exec_driver_sql(statements.update, updates).rowcount
    if updated != len(updates):  # some rollup rows are new (a new day, key or tool)
        conn.exec_driver_sql(statements.insert_missing, inserts)


def add_to_rollups(conn: Connection, source: str, rows: Sequence[Row]) -> None:
    """Add rows just inserted into ``source`` (a table name) to its rollups, in ``conn``'s transaction."""
    apply = _apply_postgresql if conn.dialect.name == "postgresql" else _apply_sqlite
    for rollup in ROLLUPS:
        if rollup.source == source:
            found = deltas(rollup, rows)
            if found:
                apply(conn, rollup, found)


_DEFAULTS: dict[str, dict[str, Any]] = {}


def _completed(table: Table, rows: Sequence[Row]) -> Sequence[Row]:
    """Rows with the column defaults the insert filled in for the keys they lack."""
    defaults = _DEFAULTS.get(table.name)
    if defaults is None:
        defaults = _DEFAULTS[table.name] = {
            column.name: column.default.arg  # type: ignore[attr-defined]
            for column in table.columns
            if column.default is not None and column.default.is_scalar
        }
    width = len(table.columns)
    return [row if len(row) >= width else {**defaults, **row} for row in rows]


def insert_rows(conn: Connection, table: Table, rows: Sequence[Row]) -> None:
    """Insert rows into ``table`` and, if it is counted by rollups, add them to those."""
    if not rows:
        return
    conn.execute(insert(table), list(rows))
    if table.name in SOURCES:
        add_to_rollups(conn, table.name, _completed(table, rows))


REBUILD_CHUNK = 10_000


def rebuild_rollups(conn: Connection, source_tables: Mapping[str, Table]) -> dict[str, int]:
    """Empty every rollup and count again the rows there are now (after rows were put in some other
    way than `insert_rows`, e.g. a bulk import). Days whose rows retention pruned are lost from the
    rollups. Returns the rows counted per source table."""
    for table in {rollup.table.name: rollup.table for rollup in ROLLUPS}.values():
        conn.execute(delete(table))
    counted: dict[str, int] = {}
    for source in SOURCES:
        table = source_tables[source]
        result = conn.execute(
            select(table).order_by(table.c.timestamp).execution_options(yield_per=REBUILD_CHUNK)
        )
        counted[source] = 0
        for chunk in result.mappings().partitions():
            add_to_rollups(conn, source, chunk)  # type: ignore[arg-type]  # RowMapping is a Mapping
            counted[source] += len(chunk)
    return counted
