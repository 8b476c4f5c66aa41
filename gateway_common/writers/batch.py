"""Append-only rows written in batches off the request path, without losing any.

Requests hand a plain dict to `submit` (no I/O, no await). A background task
writes everything pending every ``flush_interval`` (or sooner when a batch
fills) with one executemany in a worker thread. Nothing in one row or one batch
can stop the writer or cost the other rows their place:

- a row that ``prepare`` fails on is stored anyway: each JSON value the database
  could not encode is replaced by ``{"_unstorable": "<reason>"}`` (`rows.unstorable`);
- a batch the database refuses for any reason but being unavailable is written
  again row by row, and only the rows it still refuses go to the fallback file;
- while the database is unavailable (three tries), whole batches go to the
  fallback file (`fallback_file`), which takes any row (values it cannot encode
  become the marker) and is replayed into the database at the next start;
- if the background task ends anyway (a bug), that is logged at CRITICAL,
  `stopped` says why (``/readyz`` fails), the rows stay queued and the task is
  restarted with backoff.

With a writer process (`gateway_common.writers.process`), batches are stored there. It runs only
on CPU time nothing else wants, so on a machine whose cores are all busy it can fall behind: once it
has held a batch for ``patience`` seconds, the next batches are stored here, in a worker thread,
until it hands that batch back.

`aclose` writes everything still pending, so a graceful stop loses nothing.
A killed process loses what is still in memory: rows submitted since the last
flush and the batch being written (README, "Durability").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, Table
from sqlalchemy.exc import SQLAlchemyError

from gateway_common.writers.fallback import FallbackFile
from gateway_common.writers.process import WriterProcess, WriterProcessFailed
from gateway_common.writers.rows import Row, describe
from gateway_common.writers.store import BatchStore, Preparer, Written, counted

__all__ = ["BatchWriter", "Row"]

logger = logging.getLogger("mcp_gateway.audit")


RowT = TypeVar("RowT", bound=Mapping[str, Any])
"""The row type a writer takes (a TypedDict naming the table's columns)."""


class BatchWriter(Generic[RowT]):
    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        prepare: Preparer | None = None,
        flush_interval: float = 0.05,
        batch_size: int = 500,
        fallback_path: str | Path | None = None,
        name: str | None = None,
        context: Callable[[], object] | None = None,
        process: WriterProcess | None = None,
    ) -> None:
        """``prepare`` runs where batches are stored (`gateway_common.writers.store.Preparer`), with
        ``context()`` (read as each batch is stored) as its context; ``process``: the writer
        process that stores the batches (None: a worker thread of this process does)."""
        self.engine = engine
        self.table = table
        self.name = name or table.name
        self._store = BatchStore(engine, table, prepare=prepare, fallback_path=fallback_path, name=self.name)
        self._context = context
        self._process = process
        self.patience = 1.0
        """Seconds the writer process may hold a batch before the next ones are stored here."""
        self._behind: asyncio.Task[None] | None = None
        """The batch the writer process has held longer than ``patience`` (None while it keeps up)."""
        self.stored_here = 0
        """Batches stored in this process while the writer process was behind."""
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.fallback_path = Path(fallback_path) if fallback_path else None
        self._fallback: FallbackFile | None = self._store.fallback
        self.restart_delay = 0.5
        self.max_restart_delay = 30.0
        self._pending: list[Row] = []
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._io_lock = threading.Lock()
        self._stranded: list[Row] = []
        """Rows neither the database nor the fallback file took; queued again after each flush."""
        self._failure: str | None = None
        self._cycles = 0
        self.written = 0
        self.diverted = 0
        self.refused = 0
        self.salvaged = 0
        self.restarts = 0
        self.last_error: str | None = None
        """Why the database last could not take a batch; None once one goes in."""
        self.observer: Callable[[RowT], None] | None = None
        """Sees every submitted row, on the request path (metrics count rows here): must be cheap.
        Whatever it raises is logged once and otherwise ignored."""
        self._observer_failed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def stopped(self) -> str | None:
        """Why the background task is not running (None while it runs, before start and after close)."""
        if self._failure is not None:
            return self._failure
        task = self._task
        if task is not None and task.done() and not self._closing:
            return "the writer task ended"
        return None

    def health(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "pending": len(self._pending),
            "diverted_to_fallback": self.diverted,
            "refused_rows": self.refused,
            "stored_with_marker": self.salvaged,
            "last_error": self.last_error,
            "stopped": self.stopped,
            "restarts": self.restarts,
            # Where the rows are stored: the writer process (its pid, and how often it was replaced), or None
            # for a thread of this process.
            "writer_process": self._process.health() if self._process is not None else None,
            "writer_process_behind": self._behind is not None,
            "batches_stored_here": self.stored_here,
        }

    def submit(self, row: RowT) -> None:
        """Queue one row. Never blocks and never raises: this runs on the request path."""
        self._pending.append(row)  # type: ignore[arg-type]  # a row type is a dict with typed keys
        if len(self._pending) >= self.batch_size:
            self._wake.set()
        observer = self.observer
        if observer is not None:
            try:
                observer(row)
            except Exception:
                if not self._observer_failed:
                    self._observer_failed = True
                    logger.exception("the %s writer's observer failed (logged once)", self.name)

    async def start(self) -> None:
        await asyncio.to_thread(self._replay_fallback)
        if self._process is not None:
            await self._process.register(
                self.name,
                self.table,
                type(self).__module__,  # a writer's module defines its table
                self._store.prepare,
                self.fallback_path,
            )
        self._task = asyncio.create_task(self._supervise(), name=f"batch-writer-{self.name}")

    async def _supervise(self) -> None:
        """Run the write loop; if it ends for any reason but closing, say so loudly and run it again."""
        delay: float | None = None
        while not self._closing:
            cycles = self._cycles
            try:
                await self._run()
            except Exception as exc:
                if delay is None or self._cycles > cycles:  # first failure, or it had run well since
                    delay = self.restart_delay
                else:
                    delay = min(delay * 2, self.max_restart_delay)
                self._failure = describe(exc)
                self.restarts += 1
                logger.critical(
                    "the %s writer stopped (%s); its %d rows stay queued; restarting it in %.1f s",
                    self.name,
                    self._failure,
                    len(self._pending),
                    delay,
                    exc_info=not isinstance(exc, SQLAlchemyError),  # their text can embed whole rows
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._closed()
            else:
                return

    async def _closed(self) -> None:
        while not self._closing:
            self._wake.clear()
            await self._wake.wait()

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            await self._drain()
            self._cycles += 1
            if self._failure is not None:
                logger.warning("the %s writer runs again", self.name)
                self._failure = None

    async def flush(self, *, closing: bool = False) -> None:
        """Write everything submitted so far, including a batch the background task is writing now
        and one the writer process is behind on.

        Rows that neither the database nor the fallback file would take stay queued for the next flush.
        ``closing``: wait at most the writer process's ``close_patience`` for the batch it is behind
        on; past that the process is ended and the batch stored here (`WriterProcess.abandon`).
        """
        await self._drain()
        behind, process = self._behind, self._process
        if behind is None:
            return
        # Not cancelled with us: the writer process owns that batch.
        patience = process.close_patience if closing and process is not None else None
        await asyncio.wait({behind}, timeout=patience)
        if not behind.done() and process is not None:
            process.abandon()  # its write fails at once and `_in_process` stores the batch here
            await asyncio.wait({behind})
        await self._drain()  # whatever it could not store

    async def _drain(self) -> None:
        """Store the pending rows (the background task's flush)."""
        async with self._flushing:
            try:
                while self._pending:
                    batch, self._pending = self._pending, []
                    try:
                        await self._store_batch(batch)
                    except asyncio.CancelledError:
                        raise  # the worker thread still owns the batch and finishes it
                    except BaseException:
                        self._pending[:0] = batch
                        raise
            finally:
                self._requeue_stranded()

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush(closing=True)
        except Exception as exc:
            logger.critical("the %s writer failed at close: %s", self.name, describe(exc))
        if self._pending:
            logger.critical(
                "%d %s rows could not be stored: the database and the fallback file %s both refused them",
                len(self._pending),
                self.name,
                self.fallback_path,
            )

    def _requeue_stranded(self) -> None:
        with self._io_lock:
            stranded, self._stranded = self._stranded, []
        if stranded:
            self._pending[:0] = stranded

    # -- worker thread -------------------------------------------------------------------

    async def _store_batch(self, batch: list[Row]) -> None:
        """Store a batch in the writer process if there is one, else in a worker thread (`_write`);
        here too while the writer process is behind, or if process after process dies on it."""
        if self._process is None or self._behind is not None:
            if self._process is not None:
                self.stored_here += 1
            await asyncio.to_thread(self._write, batch)
            return
        stored = asyncio.create_task(self._in_process(self._process, batch), name=f"{self.name}-batch")
        await asyncio.wait({stored}, timeout=self.patience)
        if stored.done():
            stored.result()  # what it raised: the caller queues the batch again
            return
        self._behind = stored
        stored.add_done_callback(lambda task: self._caught_up(task, batch))
        logger.warning(
            "the writer process has held a batch of %d %s rows for %.1f s (it runs on idle CPU time "
            "only, and the CPUs are busy); this process stores the next batches until it catches up",
            len(batch),
            self.name,
            self.patience,
        )

    async def _in_process(self, process: WriterProcess, batch: list[Row]) -> None:
        context = self._context() if self._context is not None else None
        try:
            written = await process.write(self.name, batch, context)
        except WriterProcessFailed as exc:
            logger.critical("%s; storing these %d %s rows here", exc, len(batch), self.name)
            await asyncio.to_thread(self._write_here, batch, again=True)
            return
        self._account(written)

    def _caught_up(self, task: asyncio.Task[None], batch: list[Row]) -> None:
        """The writer process handed back the batch it was behind on."""
        self._behind = None
        failure = None if task.cancelled() else task.exception()
        if task.cancelled() or failure is not None:  # as a failed flush does: the rows wait for the next one
            self._pending[:0] = batch
            logger.critical(
                "the writer process failed on a %s batch it was behind on (%s); its %d rows stay queued",
                self.name,
                "cancelled" if failure is None else describe(failure),
                len(batch),
            )
            return
        logger.info("the writer process caught up; it stores the %s rows again", self.name)

    def _write(self, batch: list[Row]) -> None:
        """Store a batch here (a worker thread); rows nothing took wait in ``_stranded``."""
        self._write_here(batch, again=False)

    def _write_here(self, batch: list[Row], *, again: bool) -> None:
        """``again``: some of its rows may be stored already (a writer process died on it)."""
        context = self._context() if self._context is not None else None
        with self._io_lock:
            written = self._store.write(batch, context, again=again)
        self._account(written)

    def _account(self, written: Written) -> None:
        self.written += written.written + written.present
        self.refused += written.refused
        self.diverted += written.diverted
        counted(self, written.counts)
        self.last_error = written.error  # None: the database took or judged every row
        if written.stranded:
            with self._io_lock:
                self._stranded += written.stranded

    def salvage(self, row: Row, reason: str) -> Row:
        """What to store of a row ``prepare`` failed on (`BatchStore.salvage`)."""
        return self._store.salvage(row, reason)

    # -- fallback file -------------------------------------------------------------------

    def _replay_fallback(self) -> None:
        """Put the rows of an earlier run's fallback file into the database; keep what still fails."""
        fallback = self._fallback
        if fallback is None:
            return
        try:
            lines = fallback.read()
        except OSError as exc:
            logger.error("could not read the fallback file %s: %s", fallback.path, describe(exc))
            return
        if not lines:
            return
        with self._io_lock:
            result = fallback.replay(self.engine, lines)
        try:
            fallback.keep_only(result.kept)
        except OSError as exc:  # the file stays whole; rows already in are skipped at the next replay
            logger.error("could not rewrite the fallback file %s: %s", fallback.path, describe(exc))
        logger.warning(
            "replayed %d %s rows from %s (%d were already present)",
            result.written,
            self.name,
            fallback.path,
            result.present,
        )
        if result.kept:
            logger.error(
                "%d %s rows in %s could not be replayed (%s); they stay in the file",
                len(result.kept),
                self.name,
                fallback.path,
                result.problem,
            )
