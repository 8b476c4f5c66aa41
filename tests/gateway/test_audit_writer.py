"""The audit writer: batches, caps, survives a database that refuses writes, works on Postgres."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, func, select

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from mcp_gateway.audit import AuditWriter, ToolCall
from policies.gateway_settings import AuditSettings


def row(**overrides: Any) -> Any:  # a ToolCallRow, or a deliberately broken one
    base: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "timestamp": datetime.now(UTC),
        "request_id": "1",
        "key_id": "alice",
        "key_name": "Alice",
        "team": "eng",
        "client_name": "test",
        "client_version": "1",
        "session_id": None,
        "protocol_version": "2026-07-28",
        "exposed_name": "fs__read_file",
        "server": "fs",
        "tool": "read_file",
        "arguments": {"path": "a.txt"},
        "arguments_truncated": False,
        "result": {"content": [{"type": "text", "text": "hello"}]},
        "result_truncated": False,
        "status": "ok",
        "error": None,
        "latency_ms": 1.5,
        "upstream_latency_ms": 1.2,
    }
    base.update(overrides)
    return base


def count(engine: Engine) -> int:
    with Session(engine) as db:
        return int(db.exec(select(func.count()).select_from(ToolCall)).one())


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.mark.anyio
async def test_rows_are_batched_and_all_flushed_on_close(sqlite_engine: Engine, tmp_path: Path) -> None:
    writer = AuditWriter(
        sqlite_engine, AuditSettings(flush_interval_ms=10_000, fallback_file=str(tmp_path / "fb"))
    )
    await writer.start()
    for i in range(1234):
        writer.submit(row(request_id=str(i)))
    assert count(sqlite_engine) <= 1000  # batches of 500 go out early, the rest waits for the timer
    await writer.aclose()
    assert count(sqlite_engine) == 1234
    assert writer.written == 1234 and writer.pending == 0


@pytest.mark.anyio
async def test_large_arguments_and_results_are_capped_with_a_flag(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    settings = AuditSettings(
        max_arguments_bytes=300, max_result_bytes=300, fallback_file=str(tmp_path / "fb")
    )
    writer = AuditWriter(sqlite_engine, settings)
    await writer.start()
    writer.submit(row(id="big", arguments={"content": "a" * 5000}, result={"text": "b" * 5000}))
    writer.submit(row(id="small"))
    await writer.aclose()
    with Session(sqlite_engine) as db:
        big = db.get(ToolCall, "big")
        small = db.get(ToolCall, "small")
    assert big is not None and small is not None
    assert big.arguments_truncated and big.result_truncated
    assert big.arguments["_truncated"] is True and big.arguments["bytes"] > 5000
    assert len(big.arguments["preview"]) == 300
    assert not small.arguments_truncated and small.arguments == {"path": "a.txt"}


@pytest.mark.anyio
async def test_a_refusing_database_diverts_rows_to_a_file_replayed_at_next_start(tmp_path: Path) -> None:
    db_path = tmp_path / "audit.db"
    engine = make_engine(f"sqlite:///{db_path}")
    create_schema(engine)
    fallback = tmp_path / "fallback.jsonl"
    settings = AuditSettings(fallback_file=str(fallback))
    writer = AuditWriter(engine, settings)
    await writer.start()
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE tool_calls RENAME TO tool_calls_away"))
    for i in range(5):
        writer.submit(row(request_id=str(i)))
    await writer.aclose()
    assert writer.diverted == 5 and writer.last_error is not None
    assert len(fallback.read_text().splitlines()) == 5
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE tool_calls_away RENAME TO tool_calls"))

    # Next start: the rows go in (once, even if the file were replayed twice) and the file is gone.
    again = AuditWriter(engine, settings)
    await again.start()
    await again.aclose()
    assert count(engine) == 5 and not fallback.exists()
    with Session(engine) as db:
        stamps = db.exec(select(ToolCall.timestamp)).all()
    assert all(stamp.tzinfo is not None for stamp in stamps)
    engine.dispose()


@pytest.mark.anyio
async def test_postgres_is_a_drop_in_database(tmp_path: Path, postgres_database: str) -> None:
    engine = make_engine(postgres_database)
    create_schema(engine)
    marker = uuid.uuid4().hex[:12]
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "fb")))
    await writer.start()
    for i in range(20):
        writer.submit(row(key_id=f"pg-{marker}", request_id=str(i), status="ok" if i % 2 else "denied"))
    await writer.aclose()
    with Session(engine) as db:
        rows = db.exec(select(ToolCall).where(ToolCall.key_id == f"pg-{marker}")).all()
        per_status = dict(
            db.exec(
                select(ToolCall.status, func.count())
                .where(ToolCall.key_id == f"pg-{marker}")
                .group_by(col(ToolCall.status))
            ).all()
        )
    assert len(rows) == 20 and per_status == {"ok": 10, "denied": 10}
    assert rows[0].arguments == {"path": "a.txt"}
    engine.dispose()


@pytest.mark.anyio
async def test_flush_waits_for_a_batch_already_being_written(sqlite_engine: Engine, tmp_path: Path) -> None:
    """flush() returns only once every row submitted before it is in the database, even the rows
    the background task took a moment earlier."""
    writer = AuditWriter(
        sqlite_engine, AuditSettings(flush_interval_ms=1, fallback_file=str(tmp_path / "fb"))
    )
    slow_write = writer._write
    started = threading.Event()

    def write(batch: list[dict[str, Any]]) -> None:
        started.set()
        time.sleep(0.2)
        slow_write(batch)

    writer._write = write  # type: ignore[method-assign]
    await writer.start()
    writer.submit(row(id="in-flight"))
    while not started.is_set():  # the background task holds the row, pending is empty again
        await asyncio.sleep(0.001)
    await writer.flush()
    with Session(sqlite_engine) as db:
        assert db.get(ToolCall, "in-flight") is not None
    await writer.aclose()
