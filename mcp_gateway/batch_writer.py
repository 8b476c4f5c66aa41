"""Append-only rows written in batches off the request path, without losing any.

Requests hand a plain dict to `submit` (no I/O, no await). A background task
writes everything pending every ``flush_interval`` (or sooner when a batch
fills) with one executemany in a worker thread. If the database refuses a
batch, the rows go to a JSON-lines fallback file, which is replayed into the
database at the next start. `aclose` writes everything still pending, so a
graceful stop loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import DateTime, Engine, Table, insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

logger = logging.getLogger("mcp_gateway.audit")

Row = dict[str, Any]


def _holds_datetimes(column: Any) -> bool:
    """DateTime columns, including SQLModel's UTC type decorator around one."""
    return isinstance(column.type, DateTime) or isinstance(getattr(column.type, "impl", None), DateTime)


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
    ) -> None:
        self.engine = engine
        self.table = table
        self._prepare = prepare or (lambda row: row)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.fallback_path = Path(fallback_path) if fallback_path else None
        self._pending: list[Row] = []
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._io_lock = threading.Lock()
        self.written = 0
        self.diverted = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, row: Row) -> None:
        """Queue one row. Never blocks and never raises: this runs on the request path."""
        self._pending.append(row)
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        await asyncio.to_thread(self._replay_fallback)
        self._task = asyncio.create_task(self._run(), name=f"batch-writer-{self.table.name}")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything submitted so far, including a batch the background task is writing now."""
        async with self._flushing:
            while self._pending:
                batch, self._pending = self._pending, []
                await asyncio.to_thread(self._write, batch)

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    def flush_sync(self) -> None:
        """Last resort at interpreter exit: write what is left from this thread."""
        batch, self._pending = self._pending, []
        if batch:
            self._write(batch)

    # -- worker thread -------------------------------------------------------------------

    def _write(self, batch: list[Row]) -> None:
        rows = []
        for row in batch:
            try:
                rows.append(self._prepare(row))
            except Exception:
                logger.exception("could not prepare a %s row; keeping it raw", self.table.name)
                rows.append(row)
        with self._io_lock:
            for attempt in (1, 2, 3):
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(self.table), rows)
                    self.written += len(rows)
                    self.last_error = None
                    return
                except SQLAlchemyError as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    if attempt < 3:
                        threading.Event().wait(0.05 * attempt)
            self._divert(rows)

    def _divert(self, rows: list[Row]) -> None:
        if self.fallback_path is None:
            logger.error(
                "database refused %d %s rows and no fallback file is set", len(rows), self.table.name
            )
            return
        self.fallback_path.parent.mkdir(parents=True, exist_ok=True)
        with self.fallback_path.open("ab") as fh:
            for row in rows:
                fh.write(orjson.dumps(row, default=str) + b"\n")
        self.diverted += len(rows)
        logger.error(
            "database refused %d %s rows (%s); kept them in %s for replay",
            len(rows),
            self.table.name,
            self.last_error,
            self.fallback_path,
        )

    def _replay_fallback(self) -> None:
        path = self.fallback_path
        if path is None or not path.exists() or path.stat().st_size == 0:
            return
        date_columns = {c.name for c in self.table.columns if _holds_datetimes(c)}
        replayed = skipped = 0
        with self._io_lock, self.engine.begin() as conn:
            for line in path.read_bytes().splitlines():
                if not line.strip():
                    continue
                row = orjson.loads(line)
                for name in date_columns:
                    if isinstance(row.get(name), str):
                        row[name] = datetime.fromisoformat(row[name])
                try:
                    with conn.begin_nested():
                        conn.execute(insert(self.table), [row])
                    replayed += 1
                except IntegrityError:
                    skipped += 1
        path.unlink()
        logger.warning(
            "replayed %d %s rows from %s (%d were already present)", replayed, self.table.name, path, skipped
        )
