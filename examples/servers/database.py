"""Example upstream: read-only SQL over a small bundled SQLite shop database.

The database is built from ``data/demo.sql`` the first time a path is used. Every
connection is opened read-only three times over: the file in URI ``mode=ro``,
``PRAGMA query_only``, and, for caller-supplied SQL, an authorizer that denies every
action except reading. So a write, ATTACH or PRAGMA fails inside SQLite itself, not in a
keyword filter that a clever statement could slip past.

Run alone: ``python -m examples.servers.database [--db PATH] [--transport http --port N]``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from examples.servers import _cli
from examples.servers._atomic import temp_sibling

SEED_SQL = Path(__file__).with_name("data") / "demo.sql"
DEFAULT_DB = Path("data/demo.db")
QUERY_TIME_LIMIT_S = 2.0
"""A runaway query (say an unbounded recursive CTE) is interrupted after this long."""
MAX_LIMIT = 1000

_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_OTHER_ACTIONS = {
    "INSERT",
    "UPDATE",
    "DELETE",
    "ATTACH",
    "DETACH",
    "PRAGMA",
    "TRANSACTION",
    "SAVEPOINT",
    "ANALYZE",
}
_ACTION_NAMES = {
    code: name.removeprefix("SQLITE_").replace("_", " ")
    for name, code in vars(sqlite3).items()
    if name.startswith(("SQLITE_CREATE_", "SQLITE_DROP_", "SQLITE_ALTER_"))
    or name.removeprefix("SQLITE_") in _OTHER_ACTIONS
}
"""Authorizer action codes by name, so a refusal can say what SQLite denied."""

Cell = str | int | float | None


class TableSummary(BaseModel):
    name: str
    type: Literal["table", "view"]
    row_count: int


class Tables(BaseModel):
    tables: list[TableSummary]


class Column(BaseModel):
    name: str
    type: str
    nullable: bool
    primary_key: bool
    default: str | None
    """The column's DEFAULT expression as written in the schema, if any."""


class ForeignKey(BaseModel):
    column: str
    references: str
    """``table.column`` this column points at."""


class TableDescription(BaseModel):
    name: str
    type: Literal["table", "view"]
    columns: list[Column]
    primary_key: list[str]
    foreign_keys: list[ForeignKey]
    row_count: int


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Cell]]
    row_count: int
    truncated: bool
    """True when more rows matched than ``limit``; re-run with a higher limit or a narrower query."""


def ensure_database(path: Path) -> Path:
    """Create ``path`` from the seed SQL when it does not exist yet, atomically."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with closing(sqlite3.connect(tmp)) as conn:
            conn.executescript(SEED_SQL.read_text(encoding="utf-8"))
            conn.commit()
        os.replace(tmp, path)  # a crash mid-seed never leaves a half-built database behind
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class Database:
    """Read-only access to one SQLite file; a fresh connection per call keeps threads apart."""

    def __init__(self, path: Path, time_limit: float = QUERY_TIME_LIMIT_S) -> None:
        self.time_limit = time_limit
        self.path = ensure_database(path).resolve()
        self._uri = self.path.as_uri() + "?mode=ro"
        try:
            self._objects()  # fail at start-up, not on the first call, if it is not a database
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _objects(self) -> dict[str, Literal["table", "view"]]:
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT name, type FROM sqlite_schema "
                "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            ).fetchall()
        return {str(name): "view" if kind == "view" else "table" for name, kind in rows}

    def _lookup(self, name: str) -> Literal["table", "view"]:
        objects = self._objects()
        if name not in objects:
            known = ", ".join(objects) or "none"
            raise ToolError(f"unknown table {name!r}; available tables: {known}")
        return objects[name]

    def list_tables(self) -> Tables:
        objects = self._objects()
        with closing(self._connect()) as conn:
            return Tables(
                tables=[
                    TableSummary(name=name, type=kind, row_count=self._count(conn, name))
                    for name, kind in objects.items()
                ]
            )

    @staticmethod
    def _count(conn: sqlite3.Connection, name: str) -> int:
        return int(conn.execute(f"SELECT COUNT(*) FROM {_quote(name)}").fetchone()[0])

    def describe(self, name: str) -> TableDescription:
        kind = self._lookup(name)
        with closing(self._connect()) as conn:
            info = conn.execute(
                "SELECT name, type, [notnull], dflt_value, pk FROM pragma_table_info(?) ORDER BY cid", (name,)
            ).fetchall()
            fks = conn.execute(
                'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)', (name,)
            ).fetchall()
            row_count = self._count(conn, name)
        key = [col for col, _typ, _nn, _d, pk in sorted(info, key=lambda r: r[4]) if pk > 0]
        # Only an INTEGER PRIMARY KEY (the rowid alias) is implicitly NOT NULL in SQLite.
        rowid_alias = {
            col for col, typ, _nn, _d, pk in info if pk and len(key) == 1 and typ.upper() == "INTEGER"
        }
        columns = [
            Column(
                name=col,
                type=typ or "ANY",
                nullable=not notnull and col not in rowid_alias,
                primary_key=pk > 0,
                default=dflt,
            )
            for col, typ, notnull, dflt, pk in info
        ]
        return TableDescription(
            name=name,
            type=kind,
            columns=columns,
            primary_key=key,
            foreign_keys=[
                ForeignKey(column=src, references=f"{table}.{dst or 'rowid'}") for src, table, dst in fks
            ],
            row_count=row_count,
        )

    def query(self, sql: str, limit: int) -> QueryResult:
        denied: list[str] = []
        deadline = time.monotonic() + self.time_limit

        def authorize(
            action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None
        ) -> int:
            if action in _ALLOWED_ACTIONS:
                return sqlite3.SQLITE_OK
            name = _ACTION_NAMES.get(action, f"action {action}")
            denied.append(f"{name} on {arg1}" if arg1 else name)
            return sqlite3.SQLITE_DENY

        with closing(self._connect()) as conn:
            conn.set_authorizer(authorize)
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            try:
                cursor = conn.execute(sql)
                fetched = cursor.fetchmany(limit + 1)
            except sqlite3.Error as exc:
                if denied:
                    raise ToolError(
                        "query refused: the database is read-only and only SELECT statements may run "
                        f"(SQLite denied {denied[0]})"
                    ) from None
                if time.monotonic() > deadline:
                    raise ToolError(f"query interrupted after {self.time_limit:g} s time limit") from None
                raise ToolError(f"query failed: {exc}") from None
            columns = [d[0] for d in cursor.description or ()]
        rows = [[_cell(value) for value in row] for row in fetched[:limit]]
        return QueryResult(columns=columns, rows=rows, row_count=len(rows), truncated=len(fetched) > limit)


def _cell(value: object) -> Cell:
    """JSON has no bytes, so BLOBs come back as SQLite hex literals."""
    if isinstance(value, bytes):
        return f"X'{value.hex().upper()}'"
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def build_server(db: Path | str | None = None, *, time_limit: float = QUERY_TIME_LIMIT_S) -> MCPServer:
    """Build the server over ``db`` (default ./data/demo.db), seeding it from demo.sql when missing."""
    database = Database(Path(db) if db is not None else DEFAULT_DB, time_limit)
    mcp = MCPServer(
        "example-database",
        version="0.1.0",
        instructions=(
            "A read-only SQLite shop database (customers, products, orders, order_items, order_totals). "
            "Call list_tables and describe_table before writing SQL; query only runs SELECT statements."
        ),
    )
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @mcp.tool(title="List tables", annotations=read_only)
    def list_tables() -> Tables:
        """List the tables and views in the database with their row counts."""
        return database.list_tables()

    @mcp.tool(title="Describe table", annotations=read_only)
    def describe_table(
        name: Annotated[str, Field(description="Table or view name, e.g. orders")],
    ) -> TableDescription:
        """Show a table's columns (type, nullability, default), primary key, foreign keys and row count."""
        return database.describe(name)

    @mcp.tool(title="Run read-only SQL", annotations=read_only)
    def query(
        sql: Annotated[str, Field(description="One SQLite SELECT (or WITH ... SELECT) statement")],
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Maximum rows to return")] = 100,
    ) -> QueryResult:
        """Run one read-only SQL statement and return its columns and rows.

        Writes, schema changes, ATTACH and PRAGMA are refused by the database itself.
        At most `limit` rows come back; `truncated` says whether more matched.
        """
        return database.query(sql, limit)

    return mcp


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.base_parser(
        "examples.servers.database", "Serve a read-only demo SQLite database over MCP.", default_port=8102
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=DEFAULT_DB,
        help=f"SQLite file to serve; created from demo.sql when missing (default: {DEFAULT_DB})",
    )

    def build(args: argparse.Namespace) -> MCPServer:
        return build_server(args.db)

    _cli.main(parser, build, argv)


if __name__ == "__main__":
    main()
