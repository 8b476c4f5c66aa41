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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Dialect, Table, delete, insert, select

from gateway_common.rollups.folding import ROLLUPS, SOURCES, Measure, Rollup, Row, deltas, groups


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
    folded = groups(source, rows)
    for rollup in ROLLUPS:
        if rollup.source == source:
            found = deltas(rollup, folded)
            if found:
                apply(conn, rollup, found)


_DEFAULTS: dict[str, dict[str, Any]] = {}


def _default(column: Any) -> Any:
    """What the insert stores for a column a row leaves out: its default (or server default), else NULL."""
    if column.default is not None and column.default.is_scalar:
        return column.default.arg
    text = getattr(column.server_default, "arg", None)
    return text if isinstance(text, str) else None


def _completed(table: Table, rows: Sequence[Row]) -> Sequence[Row]:
    """Rows with what the insert filled in for the columns they leave out."""
    defaults = _DEFAULTS.get(table.name)
    if defaults is None:
        defaults = _DEFAULTS[table.name] = {column.name: _default(column) for column in table.columns}
    width = len(table.columns)
    return [row if len(row) >= width else {**defaults, **row} for row in rows]


@dataclass(frozen=True)
class _SqliteInsert:
    """A table's INSERT for SQLite, with SQLAlchemy's own value conversions but not its per-row
    machinery, which held the GIL the requests need: the audit writer's whole batch (prepare,
    insert, rollups, commit) went from 44 to 35 us of CPU a row, measured alone at 30 rows a batch."""

    statement: str
    columns: Callable[[Row], tuple[Any, ...]]
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]

    @classmethod
    def for_table(cls, table: Table, conn: Connection) -> _SqliteInsert:
        dialect, names = conn.dialect, [column.name for column in table.columns]
        converters = []
        for index, column in enumerate(table.columns):
            converter = column.type.dialect_impl(dialect).bind_processor(dialect)
            if converter is not None:
                converters.append((index, converter))
        quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
        return cls(
            f"INSERT INTO {table.name} ({quoted}) VALUES ({', '.join('?' for _ in names)})",
            itemgetter(*names),
            tuple(converters),
        )

    def run(self, conn: Connection, rows: Sequence[Row]) -> None:
        columns, converters = self.columns, self.converters
        values: list[tuple[Any, ...]] = []
        for row in rows:
            one = list(columns(row))
            for index, convert in converters:
                one[index] = convert(one[index])
            values.append(tuple(one))
        conn.exec_driver_sql(self.statement, values)


_SQLITE_INSERTS: WeakKeyDictionary[Dialect, dict[str, _SqliteInsert]] = WeakKeyDictionary()
"""Per dialect (engine): its JSON serializer is the engine's own."""


def insert_rows(conn: Connection, table: Table, rows: Sequence[Row]) -> None:
    """Insert rows into ``table`` and, if it is counted by rollups, add them to those."""
    if not rows:
        return
    if (
        conn.dialect.name == "sqlite"
        and table.name in SOURCES
        and all(len(row) == len(table.columns) for row in rows)
    ):
        prepared = _SQLITE_INSERTS.setdefault(conn.dialect, {})
        fast = prepared.get(table.name)
        if fast is None:
            fast = prepared[table.name] = _SqliteInsert.for_table(table, conn)
        fast.run(conn, rows)
    else:  # PostgreSQL, and rows that leave columns to their defaults
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
