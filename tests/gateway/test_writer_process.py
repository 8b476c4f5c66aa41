"""The writer process: rows stored outside the serving process, and none lost when it dies."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from gateway_app.app import WRITER_MODULES, _start_writer_process
from gateway_app.database import create_schema
from gateway_app.metrics_families import _writer_families
from gateway_common.db import make_engine
from gateway_common.writers.process import (
    PICKLE_SLICE,
    WriterProcess,
    WriterProcessFailed,
    _pickled,
    _unpickled,
)
from gateway_common.writers.store import BatchStore
from mcp_gateway.audit import AuditWriter, ToolCall
from mcp_gateway.audit.writer import AuditCleaner
from policies import load_policy_text
from policies.gateway_settings import AuditSettings, GatewaySettings
from tests.gateway.test_audit_writer import count, row

pytestmark = pytest.mark.anyio


class DiesInTheWriterProcess(AuditCleaner):
    """Ends the writer process at a row whose tool is ``die``: every process it is sent to dies."""

    def __init__(self, settings: AuditSettings) -> None:
        super().__init__(settings)
        self.serving = os.getpid()  # pickled with it: the writer process sees the serving process's

    def __call__(self, one: dict[str, Any]) -> dict[str, Any]:
        if one.get("tool") == "die" and os.getpid() != self.serving:
            os._exit(3)
        return super().__call__(one)


class LogsInTheWriterProcess(AuditCleaner):
    def __call__(self, one: dict[str, Any]) -> dict[str, Any]:
        logging.getLogger("mcp_gateway.audit").error("cleaned in process %d", os.getpid())
        return super().__call__(one)


class WaitsInTheWriterProcess(AuditCleaner):
    """Waits at rows whose tool is ``wait`` until the file ``gate`` is gone (announcing it first)."""

    def __init__(self, settings: AuditSettings, gate: Path) -> None:
        super().__init__(settings)
        self.gate = gate
        self.serving = os.getpid()

    def __call__(self, one: dict[str, Any]) -> dict[str, Any]:
        if one.get("tool") == "wait" and os.getpid() != self.serving and self.gate.exists():
            self.gate.with_suffix(".reached").write_text(str(os.getpid()))
            while self.gate.exists():
                time.sleep(0.01)
        return super().__call__(one)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    create_schema(engine)
    yield url, engine
    engine.dispose()


@pytest.fixture
async def process(database: tuple[str, Engine]) -> AsyncIterator[WriterProcess]:
    writer_process = WriterProcess(database[0], preload=WRITER_MODULES)
    await writer_process.start()
    yield writer_process
    await writer_process.close()


def settings(tmp_path: Path) -> AuditSettings:
    return AuditSettings(fallback_file=str(tmp_path / "audit-fallback.jsonl"))


def writer_samples(writer: AuditWriter) -> set[tuple[str, float]]:
    """The writer's samples on /metrics (one writer, so names alone tell them apart)."""
    return {
        (sample.name, sample.value)
        for family in _writer_families({"audit": writer.health()})
        for sample in family.samples
    }


def stored(engine: Engine) -> list[ToolCall]:
    with Session(engine) as db:
        return list(db.exec(select(ToolCall)).all())


async def test_rows_are_cleaned_and_stored_by_another_process_and_its_counts_come_back(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess
) -> None:
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    await writer.start()
    assert process.pid is not None and process.pid != os.getpid()
    writer.submit(row(arguments={"path": "a.txt", "api_key": "sk-live-0123456789abcdef0123"}))
    writer.submit(row())
    await writer.flush()
    rows = stored(engine)
    assert len(rows) == 2 and writer.written == 2
    assert writer.redacted == 1  # counted in the writer process, added up here
    assert all("0123456789abcdef" not in str(r.arguments) for r in rows)
    await writer.aclose()


async def test_a_batch_of_several_slices_is_stored_whole_and_once(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess
) -> None:
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    await writer.start()
    sent = [row(arguments={"n": n}) for n in range(2 * PICKLE_SLICE + 3)]
    for one in sent:
        writer.submit(one)
    await writer.flush()
    rows = stored(engine)
    assert sorted((r.id, r.arguments) for r in rows) == sorted((one["id"], one["arguments"]) for one in sent)
    assert writer.written == len(sent)
    await writer.aclose()


async def test_rows_cross_a_slice_at_a_time_and_the_event_loop_runs_between_slices() -> None:
    batch = [row(arguments={"n": n}) for n in range(2 * PICKLE_SLICE + 1)]
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    pickled = await _pickled(batch)
    counter.cancel()
    assert len(pickled) == 3  # one pickle per slice
    assert turns >= 2  # a turn for other tasks between slices
    assert _unpickled(pickled) == batch  # every row, in its order, timestamps and all


async def test_a_policy_change_reaches_the_writer_process(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess
) -> None:
    _, engine = database
    text = "virtual_keys: [{id: alice, secret_env: A}]\nmcp: {servers: [{name: fs, url: 'http://127.0.0.1:9/mcp'}]}\n"
    current = [load_policy_text(text, "policy.yaml").policy]
    writer = AuditWriter(engine, settings(tmp_path), policy=lambda: current[0], process=process)
    await writer.start()
    writer.submit(row(tool="before"))
    await writer.flush()
    current[0] = load_policy_text(
        text.replace("secret_env: A", "secret_env: A, audit_content: false"), "p.yaml"
    ).policy
    writer.submit(row(tool="after"))
    await writer.flush()
    by_tool = {r.tool: r for r in stored(engine)}
    assert by_tool["before"].arguments == {"path": "a.txt"}
    assert by_tool["after"].arguments == {
        "_not_logged": "not logged: virtual key 'alice' has audit_content false"
    }
    assert writer.withheld == 1
    await writer.aclose()


async def test_a_writer_process_killed_between_batches_is_replaced(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess
) -> None:
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    await writer.start()
    writer.submit(row())
    await writer.flush()
    first = process.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    writer.submit(row())
    await writer.flush()
    assert count(engine) == 2 and process.restarts == 1
    assert process.pid not in (None, first)
    assert writer.health()["writer_process"] == {"pid": process.pid, "restarts": 1}  # shown in /readyz
    assert writer.health()["writer_process_behind"] is False
    await writer.aclose()


async def test_a_writer_process_killed_mid_batch_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess
) -> None:
    """The batch goes to a new process; rows the first had stored would be skipped by primary key."""
    _, engine = database
    gate = tmp_path / "gate"
    gate.write_text("")
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    writer._store.prepare = WaitsInTheWriterProcess(writer.settings, gate)
    await writer.start()
    for tool in ("read_file", "wait", "read_file"):
        writer.submit(row(tool=tool))
    flushing = asyncio.create_task(writer.flush())
    reached = gate.with_suffix(".reached")
    for _ in range(1000):
        if reached.exists():
            break
        await asyncio.sleep(0.01)
    os.kill(int(reached.read_text()), signal.SIGKILL)
    gate.unlink()
    await flushing
    assert count(engine) == 3 and writer.written == 3 and process.restarts == 1
    assert not (tmp_path / "audit-fallback.jsonl").exists()
    await writer.aclose()


async def test_a_batch_every_writer_process_dies_on_is_stored_by_the_serving_process(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess, caplog: pytest.LogCaptureFixture
) -> None:
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    writer._store.prepare = DiesInTheWriterProcess(writer.settings)
    await writer.start()
    writer.submit(row(tool="die"))
    writer.submit(row())
    with caplog.at_level(logging.ERROR, logger="mcp_gateway.audit"):
        await writer.flush()
    assert count(engine) == 2
    assert any("died twice" in r.getMessage() and r.levelno == logging.CRITICAL for r in caplog.records)
    writer.submit(row())  # and the next batch goes to a writer process again
    await writer.flush()
    assert count(engine) == 3 and process.pid is not None
    await writer.aclose()


async def test_the_writer_process_ignores_interrupts_and_its_logs_reach_the_serving_process(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A Ctrl-C reaches the whole process group: the writer process must outlive the gateway's drain."""
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    writer._store.prepare = LogsInTheWriterProcess(writer.settings)
    await writer.start()
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    writer.submit(row(result=object()))  # cannot be encoded: stored with a marker, counted there
    with caplog.at_level(logging.ERROR, logger="mcp_gateway.audit"):
        await writer.flush()
    assert process.pid == pid and process.restarts == 0 and count(engine) == 1
    assert writer.salvaged == 1
    logged = [r for r in caplog.records if r.getMessage() == f"cleaned in process {pid}"]
    assert logged and logged[0].processName == "writer process"
    await writer.aclose()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
async def test_the_writer_process_runs_only_on_idle_cpu_time(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess
) -> None:
    """A request waking on a core the writer is using preempts it at once (`_run_on_idle_cpu`)."""
    writer = AuditWriter(database[1], settings(tmp_path), process=process)
    await writer.start()  # a round trip: the process is past its set-up
    assert process.pid is not None
    assert os.sched_getscheduler(process.pid) == os.SCHED_IDLE
    await writer.aclose()


async def test_while_the_writer_process_is_behind_the_serving_process_stores_the_next_batches(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer process that gets no CPU (stopped here, as busy cores starve it) holds one batch; the
    rows after it are stored without it, and that batch is stored once it runs again."""
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    writer.flush_interval, writer.patience = 0.01, 0.2
    await writer.start()
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
            writer.submit(row(tool="held"))
            while not writer.health()["writer_process_behind"]:
                await asyncio.sleep(0.01)
            for _ in range(3):  # three flushes, each stored here
                writer.submit(row(tool="later"))
                while writer.pending:
                    await asyncio.sleep(0.01)
            while writer.written < 3:
                await asyncio.sleep(0.01)
            assert sorted(str(r.tool) for r in stored(engine)) == ["later"] * 3
            assert writer.stored_here == 3 and writer.health()["batches_stored_here"] == 3
            assert writer_samples(writer) >= {
                ("mcp_gateway_writer_process_behind", 1.0),
                ("mcp_gateway_writer_batches_stored_in_gateway_total", 3.0),
                ("mcp_gateway_writer_process_restarts_total", 0.0),
            }
        assert any("has held a batch of 1 audit rows" in r.getMessage() for r in caplog.records)
    finally:
        os.kill(pid, signal.SIGCONT)
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        await writer.flush()  # waits for the batch the writer process held
        assert any("caught up" in r.getMessage() for r in caplog.records)
    assert sorted(str(r.tool) for r in stored(engine)) == ["held"] + ["later"] * 3
    assert writer.written == 4 and writer.health()["writer_process_behind"] is False
    assert ("mcp_gateway_writer_process_behind", 0.0) in writer_samples(writer)
    assert process.restarts == 0
    writer.submit(row(tool="after"))  # the writer process stores batches again
    await writer.flush()
    assert count(engine) == 5 and writer.stored_here == 3
    await writer.aclose()


async def test_a_batch_the_writer_process_was_behind_on_is_stored_at_close(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess
) -> None:
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    writer.flush_interval, writer.patience = 0.01, 0.1
    await writer.start()
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    writer.submit(row(tool="held"))
    while not writer.health()["writer_process_behind"]:
        await asyncio.sleep(0.01)
    closing = asyncio.create_task(writer.aclose())
    await asyncio.sleep(0.2)
    assert not closing.done()  # the batch is the writer process's until it hands it back
    os.kill(pid, signal.SIGCONT)
    await closing
    assert [r.tool for r in stored(engine)] == ["held"] and writer.written == 1


def test_a_batch_sent_again_skips_the_rows_already_stored(
    tmp_path: Path, database: tuple[str, Engine]
) -> None:
    _, engine = database
    store = BatchStore(engine, ToolCall.__table__, fallback_path=tmp_path / "fb.jsonl")  # type: ignore[attr-defined]
    first, second = row(), row()
    assert store.write([first]).written == 1
    again = store.write([first, second], again=True)
    assert (again.written, again.present, again.refused) == (1, 1, 0)
    assert count(engine) == 2 and not (tmp_path / "fb.jsonl").exists()


async def test_the_gateway_writes_from_a_thread_when_asked_or_when_no_other_process_can_open_the_database(
    tmp_path: Path,
) -> None:
    on_disk = f"sqlite:///{tmp_path / 'g.db'}"
    assert await _start_writer_process(GatewaySettings(database_url=on_disk, row_writer="thread")) is None
    assert await _start_writer_process(GatewaySettings(database_url="sqlite://")) is None
    process = await _start_writer_process(GatewaySettings(database_url=on_disk))
    assert process is not None
    try:
        assert process.pid is not None
    finally:
        await process.close()


async def test_a_writer_in_a_thread_shows_no_writer_process_metrics(
    tmp_path: Path, database: tuple[str, Engine]
) -> None:
    writer = AuditWriter(database[1], settings(tmp_path))
    await writer.start()
    names = {name for name, _ in writer_samples(writer)}
    assert "mcp_gateway_writer_queue_depth" in names
    assert not {n for n in names if "writer_process" in n or "stored_in_gateway" in n}
    await writer.aclose()


async def test_a_close_ends_a_writer_process_that_never_hands_its_batch_back_and_stores_the_batch_here(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer process hung for good (stopped here; a database that never answers, say) holds a
    batch: the close waits ``close_patience`` for it, then ends the process and stores the batch."""
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    writer.flush_interval, writer.patience, process.close_patience = 0.01, 0.1, 0.5
    await writer.start()
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # never continued
    writer.submit(row(tool="held"))
    while not writer.health()["writer_process_behind"]:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        await asyncio.wait_for(writer.aclose(), 10)
    assert 0.4 < time.monotonic() - started < 5
    assert [r.tool for r in stored(engine)] == ["held"] and writer.written == 1
    assert any("ending it and storing the batch" in r.getMessage() for r in caplog.records)
    assert process.pid is None and process.restarts == 1  # ended, and no new one started
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    await asyncio.wait_for(process.close(), 5)


async def test_the_writer_process_close_is_bounded_by_a_batch_it_never_hands_back(
    tmp_path: Path, database: tuple[str, Engine], process: WriterProcess
) -> None:
    _, engine = database
    writer = AuditWriter(engine, settings(tmp_path), process=process)
    await writer.start()
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    process.close_patience = 0.3
    writing = asyncio.create_task(process.write("audit", [row()]))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(process.close(), 5)
    with pytest.raises(WriterProcessFailed, match="ended at close"):
        await writing
    assert count(engine) == 0  # the batch is its writer's again (`BatchWriter` stores it then)
