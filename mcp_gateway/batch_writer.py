"""Append-only rows written in batches off the request path, without losing any.

Requests hand a plain dict to `submit` (no I/O, no await). A background task
writes everything pending every ``flush_interval`` (or sooner when a batch
fills) with one executemany in a worker thread. Nothing in one row or one batch
can stop the writer or cost the other rows their place:

- a row that ``prepare`` fails on is stored anyway: each JSON value the database
  could not encode is replaced by ``{"_unstorable": "<reason>"}`` (`unstorable`);
- a batch the database refuses for any reason but being unavailable is written
  again row by row, and only the rows it still refuses go to the fallback file;
- while the database is unavailable (three tries), whole batches go to the
  fallback file, a JSON-lines file that takes any row (values it cannot encode
  become the marker) and is replayed into the database at the next start;
- if the background task ends anyway (a bug), that is logged at CRITICAL,
  `stopped` says why (``/readyz`` fails), the rows stay queued and the task is
  restarted with backoff.

`aclose` writes everything still pending, so a graceful stop loses nothing.
A killed process loses what is still in memory: rows submitted since the last
flush and the batch being written (README, "Durability").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, Engine, Table, insert, select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from policies.bounds import MAX_ERROR_CHARS, clip

logger = logging.getLogger("mcp_gateway.audit")

Row = dict[str, Any]

UNSTORABLE = "_unstorable"
"""Key of the marker that replaces a value the database could not store: ``{"_unstorable": reason}``."""
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)
"""Errors that say the database cannot take anything right now, as opposed to refusing one row."""
ATTEMPTS = 3
"""Tries per batch while the database is unavailable, before the batch goes to the fallback file."""
REPLAY_CHUNK = 500


def unstorable(reason: str) -> dict[str, str]:
    return {UNSTORABLE: clip(reason, MAX_ERROR_CHARS) or ""}


def describe(exc: BaseException) -> str:
    """One bounded line about an exception; never fails (a message may itself be unprintable)."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    try:
        text = str(cause).strip().splitlines()
        detail = text[0] if text else ""
    except Exception:
        detail = "(message could not be rendered)"
    return (
        clip(f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__, MAX_ERROR_CHARS) or ""
    )


def encodable(value: Any) -> bool:
    """Whether the database's JSON encoder (orjson, as `mcp_gateway.db` configures it) accepts ``value``."""
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except Exception:
        return False
    return True


def _holds_datetimes(column: Any) -> bool:
    """DateTime columns, including SQLModel's UTC type decorator around one."""
    return isinstance(column.type, DateTime) or isinstance(getattr(column.type, "impl", None), DateTime)


def _holds_json(column: Any) -> bool:
    return isinstance(column.type, JSON) or isinstance(getattr(column.type, "impl", None), JSON)


@dataclass
class Stored:
    """What became of the rows of one insert."""

    written: int = 0
    refused: list[tuple[Row, Exception]] = field(default_factory=list)
    """Rows the database refused one by one, with what it said."""
    unavailable: list[Row] = field(default_factory=list)
    """Rows not written because the database could not be reached (``error`` says why)."""
    error: str | None = None


class BatchWriter:
    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        prepare: Callable[[Row], Row] | None = None,
        flush_interval: float = 0.05,
        batch_size: int = 500,
        fallback_path: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.name = name or table.name
        self._prepare = prepare or (lambda row: row)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.fallback_path = Path(fallback_path) if fallback_path else None
        self.restart_delay = 0.5
        self.max_restart_delay = 30.0
        self._json_columns = tuple(c.name for c in table.columns if _holds_json(c))
        self._date_columns = tuple(c.name for c in table.columns if _holds_datetimes(c))
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
        }

    def submit(self, row: Row) -> None:
        """Queue one row. Never blocks and never raises: this runs on the request path."""
        self._pending.append(row)
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        await asyncio.to_thread(self._replay_fallback)
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
            await self.flush()
            self._cycles += 1
            if self._failure is not None:
                logger.warning("the %s writer runs again", self.name)
                self._failure = None

    async def flush(self) -> None:
        """Write everything submitted so far, including a batch the background task is writing now.

        Rows that neither the database nor the fallback file would take stay queued for the next flush.
        """
        async with self._flushing:
            try:
                while self._pending:
                    batch, self._pending = self._pending, []
                    try:
                        await asyncio.to_thread(self._write, batch)
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
            await self.flush()
        except Exception as exc:
            logger.critical("the %s writer failed at close: %s", self.name, describe(exc))
        if self._pending:
            logger.critical(
                "%d %s rows could not be stored: the database and the fallback file %s both refused them",
                len(self._pending),
                self.name,
                self.fallback_path,
            )

    def flush_sync(self) -> None:
        """Last resort at interpreter exit: write what is left from this thread."""
        batch, self._pending = self._pending, []
        if batch:
            self._write(batch)
        self._requeue_stranded()

    def _requeue_stranded(self) -> None:
        with self._io_lock:
            stranded, self._stranded = self._stranded, []
        if stranded:
            self._pending[:0] = stranded

    # -- worker thread -------------------------------------------------------------------

    def _write(self, batch: list[Row]) -> None:
        """Store a batch: database, else fallback file; rows neither takes wait in ``_stranded``."""
        rows = [self._prepared(row) for row in batch]
        with self._io_lock:
            stored = self._store(rows)
        self.written += stored.written
        self.last_error = stored.error  # None: the database took or judged every row
        if stored.refused:
            self.refused += len(stored.refused)
            logger.error(
                "the database refused %d of %d %s rows (%s); keeping them in the fallback file",
                len(stored.refused),
                len(rows),
                self.name,
                describe(stored.refused[-1][1]),
            )
        unstored = [row for row, _ in stored.refused] + stored.unavailable
        if unstored:
            stranded = self._divert(unstored)
            with self._io_lock:
                self._stranded += stranded

    def _prepared(self, row: Row) -> Row:
        try:
            return self._prepare(row)
        except Exception as exc:
            reason = f"could not be prepared for the database: {describe(exc)}"
            self.salvaged += 1
            logger.error("a %s row %s; storing it with a marker", self.name, reason)
            return self.salvage(row, reason)

    def salvage(self, row: Row, reason: str) -> Row:
        """What to store of a row ``prepare`` failed on: each JSON value that cannot be encoded
        becomes ``{"_unstorable": reason}``, then ``prepare`` gets one more try."""
        fixed = dict(row)
        for name in self._json_columns:
            if name in fixed and not encodable(fixed[name]):
                fixed[name] = unstorable(reason)
        try:
            return self._prepare(fixed)
        except Exception:
            return fixed

    def _store(self, rows: list[Row]) -> Stored:
        """Insert rows: all at once, else (unless the database is unavailable) one by one."""
        if not rows:
            return Stored()
        failure: Exception | None = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(self.table), rows)
                return Stored(written=len(rows))
            except UNAVAILABLE as exc:
                failure = exc
                if attempt < ATTEMPTS:
                    threading.Event().wait(0.05 * attempt)
            except Exception as exc:
                failure = exc
                break
        assert failure is not None
        if isinstance(failure, UNAVAILABLE):
            return Stored(unavailable=rows, error=describe(failure))
        if len(rows) == 1:
            return Stored(refused=[(rows[0], failure)])
        stored = Stored()
        for index, row in enumerate(rows):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(self.table), [row])
                stored.written += 1
            except UNAVAILABLE as exc:
                stored.unavailable = rows[index:]
                stored.error = describe(exc)
                break
            except Exception as exc:
                stored.refused.append((row, exc))
        return stored

    # -- fallback file -------------------------------------------------------------------

    def _divert(self, rows: list[Row]) -> list[Row]:
        """Append rows to the fallback file; returns them if the file cannot be written either."""
        if self.fallback_path is None:
            logger.error("%d %s rows were not stored and no fallback file is set", len(rows), self.name)
            return []
        try:
            self.fallback_path.parent.mkdir(parents=True, exist_ok=True)
            with self.fallback_path.open("ab") as fh:
                fh.write(b"".join(self._fallback_line(row) for row in rows))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            logger.critical(
                "could not write %d %s rows to the fallback file %s (%s); they stay queued",
                len(rows),
                self.name,
                self.fallback_path,
                describe(exc),
            )
            return rows
        self.diverted += len(rows)
        logger.error(
            "kept %d %s rows in %s for replay at the next start (%s)",
            len(rows),
            self.name,
            self.fallback_path,
            self.last_error or "refused by the database",
        )
        return []

    @staticmethod
    def _fallback_line(row: Row) -> bytes:
        """One JSON line for any row: values that cannot be encoded become the marker."""
        try:
            return orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        except Exception as exc:
            reason = f"could not be encoded for the fallback file: {describe(exc)}"
            fixed = {str(k): v if encodable(v) else unstorable(reason) for k, v in row.items()}
            return orjson.dumps(fixed, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"

    def _revive(self, line: bytes) -> Row:
        row: Row = orjson.loads(line)
        for name in self._date_columns:
            if isinstance(row.get(name), str):
                row[name] = datetime.fromisoformat(row[name])
        return row

    def _replay_fallback(self) -> None:
        """Put the rows of an earlier run's fallback file into the database; keep what still fails."""
        path = self.fallback_path
        if path is None:
            return
        try:
            if not path.exists() or path.stat().st_size == 0:
                return
            lines = [line for line in path.read_bytes().splitlines() if line.strip()]
        except OSError as exc:
            logger.error("could not read the fallback file %s: %s", path, describe(exc))
            return
        replayed = present = 0
        kept: list[bytes] = []
        problem: str | None = None
        with self._io_lock:
            for start in range(0, len(lines), REPLAY_CHUNK):
                chunk = lines[start : start + REPLAY_CHUNK]
                rows: list[Row] = []
                owner: dict[int, bytes] = {}
                for line in chunk:
                    try:
                        row = self._revive(line)
                    except Exception as exc:
                        kept.append(line)
                        problem = f"unreadable line: {describe(exc)}"
                        continue
                    owner[id(row)] = line
                    rows.append(row)
                stored = self._store(rows)
                replayed += stored.written
                for row, refusal in stored.refused:
                    if isinstance(refusal, IntegrityError) and self._already_present(row):
                        present += 1  # written before it reached the file (a batch that was retried)
                    else:
                        kept.append(owner[id(row)])
                        problem = describe(refusal)
                if stored.unavailable:
                    kept += [owner[id(row)] for row in stored.unavailable]
                    kept += lines[start + REPLAY_CHUNK :]
                    problem = stored.error
                    break
        try:
            self._rewrite(path, kept)
        except OSError as exc:  # the file stays whole; rows already in are skipped at the next replay
            logger.error("could not rewrite the fallback file %s: %s", path, describe(exc))
        logger.warning(
            "replayed %d %s rows from %s (%d were already present)", replayed, self.name, path, present
        )
        if kept:
            logger.error(
                "%d %s rows in %s could not be replayed (%s); they stay in the file",
                len(kept),
                self.name,
                path,
                problem,
            )

    def _already_present(self, row: Row) -> bool:
        """Whether a row with this row's primary key is in the table (a duplicate, not a bad row)."""
        keys = list(self.table.primary_key.columns)
        if not keys or any(row.get(column.name) is None for column in keys):
            return False
        try:
            query = select(*keys).where(*(column == row[column.name] for column in keys))
            with self.engine.connect() as conn:
                return conn.execute(query).first() is not None
        except Exception:
            return False

    @staticmethod
    def _rewrite(path: Path, lines: Iterable[bytes]) -> None:
        kept = list(lines)
        if not kept:
            path.unlink()
            return
        spare = path.with_name(path.name + ".tmp")
        spare.write_bytes(b"".join(line + b"\n" for line in kept))
        os.replace(spare, path)
