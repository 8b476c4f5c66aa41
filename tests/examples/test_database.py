"""The database example server: the seeded demo database, and reads only, through a real MCP client."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from mcp import Client

from examples.servers.database import build_server
from tests.examples._support import error_text, stdio_params

pytestmark = pytest.mark.anyio

SEEDED_COUNTS = {"customers": 8, "order_items": 20, "order_totals": 12, "orders": 12, "products": 8}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "demo.db"


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in SEEDED_COUNTS}


async def test_tools_are_listed_read_only(db: Path) -> None:
    async with Client(build_server(db)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"list_tables", "describe_table", "query"}
    for tool in tools.values():
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True
        assert tool.description
        assert tool.output_schema
    assert tools["query"].input_schema["properties"]["limit"]["default"] == 100


async def test_database_is_seeded_from_sql_file(db: Path) -> None:
    async with Client(build_server(db)) as client:
        result = await client.call_tool("list_tables", {})

    assert db.is_file()
    assert result.structured_content is not None
    tables = result.structured_content["tables"]
    assert {t["name"]: t["row_count"] for t in tables} == SEEDED_COUNTS
    assert {t["name"]: t["type"] for t in tables}["order_totals"] == "view"
    assert [p.name for p in db.parent.iterdir()] == ["demo.db"]  # no temp file left from seeding


async def test_existing_database_is_served_not_reseeded(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    async with Client(build_server(db)) as client:
        result = await client.call_tool("list_tables", {})

    assert result.structured_content == {"tables": [{"name": "notes", "type": "table", "row_count": 0}]}


def test_a_file_that_is_not_a_database_is_rejected_at_start(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_text("this is not sqlite, just text long enough to have a header" * 4)
    with pytest.raises(ValueError, match="not a database"):
        build_server(bogus)


async def test_describe_table(db: Path) -> None:
    async with Client(build_server(db)) as client:
        orders = await client.call_tool("describe_table", {"name": "orders"})
        items = await client.call_tool("describe_table", {"name": "order_items"})

    assert orders.structured_content is not None
    assert orders.structured_content["row_count"] == 12
    assert orders.structured_content["primary_key"] == ["id"]
    columns = {c["name"]: c for c in orders.structured_content["columns"]}
    assert list(columns) == ["id", "customer_id", "status", "ordered_at", "shipped_at"]
    assert columns["id"] == {
        "name": "id",
        "type": "INTEGER",
        "nullable": False,
        "primary_key": True,
        "default": None,
    }
    assert columns["status"]["nullable"] is False
    assert columns["status"]["type"] == "TEXT"
    assert columns["shipped_at"]["nullable"] is True
    assert orders.structured_content["foreign_keys"] == [
        {"column": "customer_id", "references": "customers.id"}
    ]

    assert items.structured_content is not None
    assert items.structured_content["primary_key"] == ["order_id", "product_id"]
    assert {fk["references"] for fk in items.structured_content["foreign_keys"]} == {
        "orders.id",
        "products.id",
    }


async def test_describe_unknown_table_is_a_clear_error(db: Path) -> None:
    async with Client(build_server(db)) as client:
        result = await client.call_tool("describe_table", {"name": "users; DROP TABLE orders"})

    message = error_text(result)
    assert "unknown table 'users; DROP TABLE orders'" in message
    assert "customers, order_items, order_totals, orders, products" in message


async def test_query_returns_columns_and_rows(db: Path) -> None:
    sql = """
        SELECT c.name, COUNT(*) AS orders
        FROM orders o JOIN customers c ON c.id = o.customer_id
        GROUP BY c.id ORDER BY orders DESC, c.name LIMIT 3
    """
    async with Client(build_server(db)) as client:
        top = await client.call_tool("query", {"sql": sql})
        limited = await client.call_tool("query", {"sql": "SELECT id FROM products ORDER BY id", "limit": 5})
        blob = await client.call_tool("query", {"sql": "SELECT X'00FF' AS raw, 1.5 AS f, NULL AS n"})

    assert top.structured_content == {
        "columns": ["name", "orders"],
        "rows": [["Ada Lovelace", 2], ["Alan Turing", 2], ["Edsger Dijkstra", 2]],
        "row_count": 3,
        "truncated": False,
    }
    assert limited.structured_content == {
        "columns": ["id"],
        "rows": [[1], [2], [3], [4], [5]],
        "row_count": 5,
        "truncated": True,
    }
    assert blob.structured_content is not None
    assert blob.structured_content["rows"] == [["X'00FF'", 1.5, None]]


@pytest.mark.parametrize(
    ("sql", "denied"),
    [
        (
            "INSERT INTO products (sku, name, category, price_cents) VALUES ('X', 'x', 'x', 1)",
            "INSERT on products",
        ),
        ("UPDATE orders SET status = 'cancelled'", "UPDATE on orders"),
        ("DELETE FROM customers", "DELETE on customers"),
        ("DROP TABLE orders", "DELETE on sqlite_master"),
        ("CREATE TABLE evil (x)", "INSERT on sqlite_master"),
        ("CREATE TEMP TABLE evil (x)", "INSERT on sqlite_temp_master"),
        ("ATTACH DATABASE 'attached.db' AS other", "ATTACH on attached.db"),
        ("PRAGMA query_only = OFF", "PRAGMA on query_only"),
        ("PRAGMA writable_schema = ON", "PRAGMA on writable_schema"),
        ("BEGIN IMMEDIATE", "TRANSACTION on BEGIN"),
        ("VACUUM", "ATTACH"),
    ],
)
async def test_writes_are_refused(db: Path, sql: str, denied: str) -> None:
    async with Client(build_server(db)) as client:
        result = await client.call_tool("query", {"sql": sql})

    message = error_text(result)
    assert "query refused: the database is read-only and only SELECT statements may run" in message
    assert f"(SQLite denied {denied})" in message
    assert _counts(db) == SEEDED_COUNTS
    assert [p.name for p in db.parent.iterdir()] == ["demo.db"]


async def test_bad_sql_is_a_clear_error(db: Path) -> None:
    async with Client(build_server(db)) as client:
        missing = await client.call_tool("query", {"sql": "SELECT * FROM nope"})
        two = await client.call_tool("query", {"sql": "SELECT 1; DELETE FROM orders"})
        bad_limit = await client.call_tool("query", {"sql": "SELECT 1", "limit": 0})

    assert "query failed: no such table: nope" in error_text(missing)
    assert "query failed: You can only execute one statement at a time." in error_text(two)
    assert "limit" in error_text(bad_limit)
    assert _counts(db) == SEEDED_COUNTS


async def test_runaway_query_is_interrupted(db: Path) -> None:
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT COUNT(*) FROM n"
    async with Client(build_server(db, time_limit=0.1)) as client:
        result = await client.call_tool("query", {"sql": endless})

    assert "query interrupted after 0.1 s time limit" in error_text(result)


async def test_runs_as_stdio_subprocess(db: Path) -> None:
    async with Client(stdio_params("database", "--db", os.fspath(db))) as client:
        result = await client.call_tool(
            "query", {"sql": "SELECT SUM(total_cents) AS revenue FROM order_totals"}
        )
        refused = await client.call_tool("query", {"sql": "DELETE FROM orders"})

    assert result.structured_content is not None
    assert result.structured_content["columns"] == ["revenue"]
    assert result.structured_content["rows"] == [[238800]]
    assert "read-only" in error_text(refused)
