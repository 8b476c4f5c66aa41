"""A database made by an earlier release gains the columns a newer one declares."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from gateway_app.database import create_schema
from gateway_common.db import add_missing_columns, make_engine


def test_old_table_gains_new_columns_and_accepts_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE tool_calls (id VARCHAR(32) PRIMARY KEY, key_id VARCHAR NOT NULL)"))
        conn.execute(text("INSERT INTO tool_calls (id, key_id) VALUES ('a', 'k')"))
    create_schema(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("tool_calls")}
    assert {"status", "exposed_name", "upstream_latency_ms"} <= columns
    assert add_missing_columns(engine) == []  # idempotent
    with engine.connect() as conn:
        assert conn.execute(text("SELECT key_id, status FROM tool_calls")).all() == [("k", None)]
    engine.dispose()
