"""Nothing in one row or one batch stops a row writer or loses the other rows.

Poisoned rows of every kind (a ``prepare`` that raises RecursionError, values orjson
cannot encode, an insert that fails with a non-database exception) are stored with a
marker or kept in the fallback file, the rest of their batch is written, and the
writer goes on writing. A writer whose loop dies anyway fails /readyz and comes back.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session, select

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from gateway_common.writers.batch import BatchWriter
from gateway_common.writers.rows import UNSTORABLE
from mcp_gateway.audit import AuditWriter, ToolCall
from policies.gateway_settings import AuditSettings
from tests.conftest import run_gateway, upstream_stdio
from tests.gateway.test_audit_writer import row

TABLE = ToolCall.__table__  # type: ignore[attr-defined]


def deep(levels: int) -> Any:
    """Deeper than orjson encodes (254) and than Python's json walks (about 1,000) when asked."""
    value: Any = "bottom"
    for _ in range(levels):
        value = {"k": value}
    return value


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    create_schema(engine)
    yield engine
    engine.dispose()


def stored(engine: Engine) -> dict[str, ToolCall]:
    with Session(engine) as db:
        return {call.id: call for call in db.exec(select(ToolCall)).all()}


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_a_prepare_that_raises_recursion_error_stores_the_row_with_a_marker(
    engine: Engine, tmp_path: Path
) -> None:
    def prepare(values: dict[str, Any]) -> dict[str, Any]:
        # What a recursive walk does to a deep value: the stdlib encoder raises RecursionError.
        return {**values, "arguments": json.loads(json.dumps(values["arguments"]))}

    writer: BatchWriter[Any] = BatchWriter(
        engine, TABLE, prepare=prepare, fallback_path=tmp_path / "fb.jsonl"
    )
    await writer.start()
    writer.submit(row(id="before"))
    writer.submit(row(id="poison", arguments=deep(2000)))
    writer.submit(row(id="after"))
    await writer.flush()
    writer.submit(row(id="later"))  # the writer still runs
    await wait_for(lambda: writer.pending == 0 and writer.written == 4)
    await writer.aclose()

    rows = stored(engine)
    assert set(rows) == {"before", "poison", "after", "later"}
    marker = rows["poison"].arguments[UNSTORABLE]
    assert "RecursionError" in marker and "prepared" in marker
    assert rows["after"].arguments == {"path": "a.txt"}
    assert writer.salvaged == 1 and writer.stopped is None and not (tmp_path / "fb.jsonl").exists()


@pytest.mark.anyio
async def test_values_orjson_cannot_encode_are_stored_as_markers_by_the_audit_writer(
    engine: Engine, tmp_path: Path
) -> None:
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "fb.jsonl")))
    await writer.start()
    writer.submit(row(id="deep-arguments", arguments=deep(300)))
    writer.submit(row(id="deep-result", result={"content": [deep(1000)]}))
    writer.submit(row(id="fine"))
    await writer.flush()
    writer.submit(row(id="later"))
    await writer.aclose()

    rows = stored(engine)
    assert set(rows) == {"deep-arguments", "deep-result", "fine", "later"}
    arguments = rows["deep-arguments"]
    assert arguments.arguments_truncated and "Recursion limit" in arguments.arguments[UNSTORABLE]
    assert arguments.result == row()["result"] and not arguments.result_truncated
    result = rows["deep-result"]
    assert result.result_truncated and UNSTORABLE in result.result
    assert result.arguments == {"path": "a.txt"}
    assert rows["fine"].arguments == {"path": "a.txt"} and not rows["fine"].arguments_truncated
    assert writer.salvaged == 2 and writer.health()["stored_with_marker"] == 2


@pytest.mark.anyio
async def test_an_insert_failing_for_one_row_keeps_the_others_and_diverts_only_that_row(
    engine: Engine, tmp_path: Path
) -> None:
    """A non-database exception from the insert (raised by an engine hook here) and a value the
    database's JSON encoder refuses: the batch is written row by row, the bad rows go to the
    fallback file (which takes even the unencodable one), and they are replayed at the next start."""

    @event.listens_for(engine, "before_cursor_execute")
    def refuse_poison(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "poison-insert" in repr(parameters):
            raise RuntimeError("not a database error")

    fallback = tmp_path / "fb.jsonl"
    writer: BatchWriter[Any] = BatchWriter(
        engine, TABLE, fallback_path=fallback
    )  # no prepare: values reach the insert raw
    await writer.start()
    ids = [uuid.uuid4().hex for _ in range(6)]
    for i, ident in enumerate(ids):
        writer.submit(row(id=ident, request_id=str(i)))
        if i == 2:
            writer.submit(row(id="poison-insert"))
            writer.submit(row(id="poison-encode", arguments=deep(300)))
    await writer.flush()
    writer.submit(row(id="later"))
    await writer.aclose()

    assert set(stored(engine)) == {*ids, "later"}
    assert writer.refused == 2 and writer.diverted == 2 and writer.stopped is None
    assert writer.last_error is None  # the database is fine: it refused two rows, not the batch
    lines = [orjson.loads(line) for line in fallback.read_bytes().splitlines()]
    assert sorted(line["id"] for line in lines) == ["poison-encode", "poison-insert"]
    encoded = next(line for line in lines if line["id"] == "poison-encode")
    assert "Recursion limit" in encoded["arguments"][UNSTORABLE]

    event.remove(engine, "before_cursor_execute", refuse_poison)
    again: BatchWriter[Any] = BatchWriter(engine, TABLE, fallback_path=fallback)
    await again.start()
    await again.aclose()
    rows = stored(engine)
    assert UNSTORABLE in rows["poison-encode"].arguments and rows["poison-insert"].request_id == "1"
    assert not fallback.exists()


@pytest.mark.anyio
async def test_a_fallback_file_line_the_database_still_refuses_stays_in_the_file(
    engine: Engine, tmp_path: Path
) -> None:
    fallback = tmp_path / "fb.jsonl"
    good = orjson.dumps(row(id="good", timestamp="2026-11-27T12:00:00+00:00")).decode()
    missing_key = orjson.dumps({k: v for k, v in row(id="no-key").items() if k != "key_id"}).decode()
    fallback.write_text(f"{good}\nnot json at all\n{missing_key}\n")
    writer: BatchWriter[Any] = BatchWriter(engine, TABLE, fallback_path=fallback)
    await writer.start()  # starts despite the bad lines
    await writer.aclose()
    assert set(stored(engine)) == {"good"}
    assert fallback.read_text().splitlines() == ["not json at all", missing_key]


@pytest.mark.anyio
async def test_a_writer_whose_loop_dies_fails_readiness_and_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULT_KEY", "fault-key-0123456789")
    config = {
        "virtual_keys": [{"id": "k", "secret_env": "FAULT_KEY"}],
        "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"k": "*"}},
    }
    async with run_gateway(config, tmp_path) as gateway:
        audit = gateway.runtime.audit
        audit.restart_delay = 0.05
        broken = threading.Event()
        broken.set()
        real_store = audit._store_batch

        async def faulty_store(batch: list[dict[str, Any]]) -> None:
            if broken.is_set():
                raise RuntimeError("injected fault in the write loop")
            await real_store(batch)

        monkeypatch.setattr(audit, "_store_batch", faulty_store)
        audit.submit(row(id="waiting"))
        await wait_for(lambda: audit.stopped is not None)

        async with httpx2.AsyncClient(base_url=gateway.base) as http:
            down = await http.get("/readyz")
            assert down.status_code == 503
            assert down.json()["status"] == "audit_writer_stopped"
            assert "injected fault" in down.json()["audit"]["stopped"]
            assert audit.pending == 1  # the row waits, it is not lost

            broken.clear()
            await wait_for(lambda: audit.stopped is None and audit.pending == 0)
            up = await http.get("/readyz")
            assert up.status_code == 200 and up.json()["status"] == "ready"
            assert up.json()["audit"]["restarts"] >= 1
        assert "waiting" in {call.id for call in await gateway.flushed_calls()}
