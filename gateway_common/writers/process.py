"""The writer process: where the batch writers store their rows, off the serving process's GIL.

A batch writer's own Python work (cleaning each row, building the insert's values, folding the
rollups) holds the GIL for hundreds of microseconds a batch; in a thread of the serving process,
the event loop waits that long for it (up to the 0.5 ms switch interval at a time) whenever a
request arrives meanwhile. Measured with `benchmarks/writer_gil.py` (a ping-pong on the event loop
while the real audit writer stores one row per round trip, 2026-12-01): p99 1.6-2.6 ms with the
writer in a thread, 0.35-0.41 ms with it here (`_run_on_idle_cpu`), 0.21-0.58 ms with no writer at all.

The serving process keeps everything a writer owns (its queue, its counters, the rows nothing
took); what crosses is one pickled batch out and a `Written` back, over a socket pair the event
loop reads and writes itself (no thread: a second thread waking mid-request costs the loop a GIL
hand-over). One process serves every writer of a gateway.

Nothing is lost when it dies: the batch it was storing is sent again to a new one (rows the first
had stored are recognised by their primary key and skipped); a batch that one process after
another dies on is stored in the serving process instead. It ignores SIGINT and SIGTERM (a
Ctrl-C reaches the whole process group) and ends when the serving process closes the pipe, or
dies. Started from multiprocessing's fork server, so a new one costs a fork, not an interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import Table
from sqlmodel import SQLModel

from gateway_common.writers.rows import Row, describe
from gateway_common.writers.store import BatchStore, Preparer, Written

logger = logging.getLogger("mcp_gateway.audit")

NICENESS = 10
"""The writer process's CPU priority where Linux's SCHED_IDLE is not available (`_run_on_idle_cpu`)."""

PICKLE_SLICE = 16
"""Rows pickled together between two turns of the event loop (about 50 us of tools/call rows)."""

TRIES = 2
"""Writer processes a batch is sent to before the serving process stores it itself."""

CLOSE_PATIENCE = 10.0
"""Seconds a close waits for a batch the writer process holds before ending the process (the batch
is then stored by the serving process: `WriterProcess.abandon`)."""


class WriterProcessFailed(RuntimeError):
    """The writer process died on a batch ``TRIES`` times (or could not be started)."""


@dataclass(frozen=True)
class _Writer:
    name: str
    table: str
    """A SQLModel table, found by name in the writer process (a pickled `Table` would carry its
    columns' default functions, which pickle only by their import path)."""
    module: str
    """Imported first: it defines the table (the writer's own module)."""
    prepare: Preparer | None
    fallback_path: str | None


class WriterProcess:
    """The serving process's end: start, register writers, store batches, close. Everything runs
    on the event loop (the pipe is read and written without a thread: a second thread waking up
    mid-request costs the loop a GIL hand-over); batches go one at a time."""

    def __init__(self, database_url: str, *, preload: Sequence[str] = ()) -> None:
        """``preload``: modules the fork server imports once, so each new process has them
        (the modules of the writers' tables and preparers)."""
        self.database_url = database_url
        self.preload = ("gateway_common.writers.process", *preload)
        self.restarts = 0
        self._writers: dict[str, _Writer] = {}
        self._lock = asyncio.Lock()
        self._process: Any = None
        self._pipe: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._contexts: dict[str, object] = {}
        self._closed = False
        self.close_patience = CLOSE_PATIENCE

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def health(self) -> dict[str, Any]:
        return {"pid": self.pid, "restarts": self.restarts}

    async def register(
        self,
        name: str,
        table: Table,
        module: str,
        prepare: Preparer | None,
        fallback_path: str | Path | None,
    ) -> None:
        """Store writer ``name``'s batches here; ``module`` defines ``table`` (a SQLModel table)."""
        if SQLModel.metadata.tables.get(table.name) is not table:
            raise ValueError(f"a writer process stores SQLModel tables only, not {table.name!r}")
        writer = _Writer(name, table.name, module, prepare, str(fallback_path) if fallback_path else None)
        async with self._lock:
            self._writers[name] = writer
            if self._pipe is not None:
                await self._call(("add", writer))

    async def start(self) -> None:
        async with self._lock:
            if self._pipe is None:
                await self._spawn()

    async def write(self, name: str, batch: list[Row], context: object = None) -> Written:
        """Store ``batch`` for writer ``name`` in the writer process; raises `WriterProcessFailed`
        when process after process died on it."""
        async with self._lock:
            if self._closed:
                raise WriterProcessFailed("the writer process is closed")
            if context is not None and self._contexts.get(name) is context:
                context = None  # the process has it already
            for attempt in range(1, TRIES + 1):
                try:
                    if self._pipe is None:
                        await self._spawn()
                    rows = await _pickled(batch)
                    reply = await self._call(("write", name, rows, context, attempt > 1))
                except (EOFError, OSError, asyncio.IncompleteReadError) as exc:
                    code = await self._ended()
                    self._contexts.clear()
                    if self._closed:  # ended at close (`abandon`): the batch is not sent to a new one
                        raise WriterProcessFailed(
                            f"the writer process was ended at close with a {name} batch in it"
                        ) from exc
                    if attempt == TRIES:
                        raise WriterProcessFailed(
                            f"the writer process died twice on one {name} batch ({describe(exc)})"
                        ) from exc
                    logger.error(
                        "the writer process ended (exit code %s) while storing %d %s rows; "
                        "sending them to a new one",
                        code,
                        len(batch),
                        name,
                    )
                    continue
                if context is not None:
                    self._contexts[name] = context
                assert isinstance(reply, Written)
                return reply
            raise AssertionError("unreachable")

    def abandon(self) -> None:
        """End the process now, with whatever batch it holds (a close has waited long enough for it:
        a process that hangs, on a database that never answers, say, must not hold the stop up).

        The `write` waiting on that batch raises `WriterProcessFailed`, so its writer stores the batch
        itself, as one sent again (rows the process had stored are skipped by their primary key; its
        open transaction ends with it); no new process is started."""
        self._closed = True
        process = self._process
        if process is not None and process.is_alive():
            logger.critical(
                "the writer process (pid %s) has not handed back the batch it holds after %.0f s of "
                "waiting at close; ending it and storing the batch in the serving process",
                process.pid,
                self.close_patience,
            )
            process.kill()

    async def close(self) -> None:
        """End the process (it stores nothing more); waits for it briefly, then kills it. A batch it
        holds is waited for ``close_patience`` seconds, then `abandon`ed."""
        try:
            await asyncio.wait_for(self._lock.acquire(), self.close_patience)
        except TimeoutError:
            self.abandon()
            await self._lock.acquire()
        try:
            self._closed = True
            pipe, process, self._pipe, self._process = self._pipe, self._process, None, None
        finally:
            self._lock.release()
        if pipe is not None:
            pipe[1].close()
            with contextlib.suppress(OSError):
                await pipe[1].wait_closed()
        if process is not None:
            await asyncio.to_thread(_stop, process, 10)

    # -- in the lock ---------------------------------------------------------------------------

    async def _spawn(self) -> None:
        process, ours = await asyncio.to_thread(self._start_process)
        sock = socket.socket(fileno=os.dup(ours.fileno()))
        ours.close()
        self._process = process
        self._pipe = await asyncio.open_connection(sock=sock)
        for writer in self._writers.values():
            await self._call(("add", writer))
        logger.info("the writer process (pid %s) stores the audit, ledger and alert rows", process.pid)

    def _start_process(self) -> tuple[Any, Connection]:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(self.preload))
        ours, theirs = context.Pipe(duplex=True)  # a socket pair
        process = context.Process(
            target=_serve, args=(theirs, self.database_url), name="mcp-gateway-writer", daemon=True
        )
        try:
            process.start()
        except Exception as exc:
            ours.close()
            raise WriterProcessFailed(f"could not start the writer process: {describe(exc)}") from exc
        finally:
            theirs.close()
        return process, ours

    async def _call(self, message: tuple[Any, ...]) -> Any:
        """One message out, its reply in, framed as `multiprocessing.connection.Connection` frames them."""
        assert self._pipe is not None
        reader, writer = self._pipe
        payload = pickle.dumps(message)
        writer.write(
            struct.pack("!i", len(payload)) + payload if len(payload) < 2**31 - 1 else _long(payload)
        )
        await writer.drain()
        (size,) = struct.unpack("!i", await reader.readexactly(4))
        if size == -1:
            (size,) = struct.unpack("!Q", await reader.readexactly(8))
        # Our own child, over a socket pair nothing else holds.
        reply, records = pickle.loads(await reader.readexactly(size))  # noqa: S301
        for record in records:
            named = logging.getLogger(record.name)
            if named.isEnabledFor(record.levelno):
                named.handle(record)
        return reply

    async def _ended(self) -> int | None:
        """Forget a process that died; returns its exit code."""
        pipe, process, self._pipe, self._process = self._pipe, self._process, None, None
        self.restarts += 1
        if pipe is not None:
            pipe[1].close()
        if process is None:
            return None
        return await asyncio.to_thread(_stop, process, 5)


async def _pickled(batch: list[Row]) -> list[bytes]:
    """The rows pickled a slice at a time (one pickle per slice), letting requests run in between: a
    whole batch at once held the event loop for 0.3 ms at 110 rows.

    A slice, not a row, per pickle: most of a lone row's cost is the pickler's own set-up and its
    timestamp's time zone, paid once per pickle. tools/call rows, 2026-12-02: 13.8 us a row pickled
    alone, 3.2 us each in a slice of 16 (51 us the slice, where row by row took 217 us)."""
    pickled: list[bytes] = []
    for start in range(0, len(batch), PICKLE_SLICE):
        if start:
            await asyncio.sleep(0)
        pickled.append(pickle.dumps(batch[start : start + PICKLE_SLICE], pickle.HIGHEST_PROTOCOL))
    return pickled


def _unpickled(pickled: list[bytes]) -> list[Row]:
    """The batch `_pickled` made, in its order."""
    # From the serving process, over a socket pair nothing else holds.
    return [row for piece in pickled for row in pickle.loads(piece)]  # noqa: S301


def _long(payload: bytes) -> bytes:
    return struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload


def _stop(process: Any, wait: float) -> int | None:
    process.join(wait)
    if process.is_alive():
        process.kill()
        process.join(5)
    return process.exitcode  # type: ignore[no-any-return]


# -- the writer process itself ----------------------------------------------------------------


class _Collect(logging.Handler):
    """Keeps this process's log records to send them to the serving process with the reply."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text, record.exc_info = logging.Formatter().formatException(record.exc_info), None
            record.processName = "writer process"
            self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        records, self.records = self.records, []
        return records


def _run_on_idle_cpu() -> None:
    """Let the writer run only when no request wants the CPU.

    Under Linux's SCHED_IDLE a request that wakes the gateway or its upstream preempts the writer at
    once; a lower nice value does not (the scheduler lets the writer finish its slice first).
    tools/call at one client, with the gateway, its upstream and the writer sharing a core
    (`benchmarks/mcp_tools_call.py`, 2026-12-01): p99 2.4-2.6 ms under SCHED_IDLE, 4.5-5.4 at nice 10,
    4.9 at nice 19 under SCHED_BATCH, 2.6-3.3 with the writer in a thread; direct 1.4-1.7. On a machine
    whose cores are all busy the writer gets almost nothing: the serving process then stores batches
    itself (`BatchWriter.patience`)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        with contextlib.suppress(OSError):
            os.nice(NICENESS)


def _serve(conn: Connection, database_url: str) -> None:
    """The writer process's loop: one message in, one reply out, until the pipe closes."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the serving process says when to stop: at its end of the pipe
    _run_on_idle_cpu()
    from gateway_common.db import make_engine

    collect = _Collect()
    root = logging.getLogger()
    root.handlers[:] = [collect]
    root.setLevel(logging.INFO)
    engine = make_engine(database_url, create_dirs=False)
    stores: dict[str, BatchStore] = {}
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            reply: object = None
            if message[0] == "add":
                writer: _Writer = message[1]
                importlib.import_module(writer.module)
                stores[writer.name] = BatchStore(
                    engine,
                    SQLModel.metadata.tables[writer.table],
                    prepare=writer.prepare,
                    fallback_path=writer.fallback_path,
                    name=writer.name,
                )
            elif message[0] == "write":
                _, name, pickled, context, again = message
                batch = _unpickled(pickled)
                try:
                    reply = stores[name].write(batch, context, again=again)
                except Exception as exc:  # a bug: the serving process keeps the rows and says so
                    logger.exception("the writer process failed on a %s batch", name)
                    reply = Written(stranded=batch, error=describe(exc))
            try:
                conn.send((reply, collect.take()))
            except (EOFError, OSError):
                return
    finally:
        engine.dispose()
