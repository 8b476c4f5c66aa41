"""Databases as earlier releases left them, built from committed fixtures (tests/fixtures/schemas/).

The DDL files are what those releases' ``create_all`` emitted (header comments say how they were
made); the rows are inserted through the tables as the database reflects them, so each value goes
through the column's real type on either database.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import DateTime, Engine, MetaData, Table, text

SCHEMAS = Path(__file__).parent / "fixtures" / "schemas"


def load_ddl(engine: Engine, name: str) -> None:
    """Run ``<name>.<sqlite|postgresql>.sql``."""
    script = (SCHEMAS / f"{name}.{engine.dialect.name}.sql").read_text(encoding="utf-8")
    body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    with engine.begin() as conn:
        for statement in body.split(";"):
            if statement.strip():
                conn.execute(text(statement))


def fixture_rows(name: str) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = orjson.loads((SCHEMAS / f"{name}.json").read_bytes())
    rows.pop("_comment", None)
    return rows


def insert_rows(engine: Engine, name: str) -> dict[str, list[dict[str, Any]]]:
    """Insert ``<name>.json``'s rows; returns them with timestamps as aware datetimes."""
    rows = fixture_rows(name)
    metadata = MetaData()
    with engine.begin() as conn:
        for table_name, table_rows in rows.items():
            table = Table(table_name, metadata, autoload_with=conn)
            stamps = {c.name for c in table.columns if isinstance(c.type, DateTime)}
            for row in table_rows:
                for column in stamps & row.keys():
                    if row[column] is not None:
                        row[column] = datetime.fromisoformat(row[column])
            conn.execute(table.insert(), table_rows)
    return rows


def postgres_sequences_follow(engine: Engine) -> None:
    """After explicit ids, move SERIAL sequences past them (as rows written by the release would)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in ("api_keys", "file_key_revocations"):
            exists = conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar()
            if exists:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
                )
