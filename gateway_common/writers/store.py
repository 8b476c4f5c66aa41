"""Storing one batch of rows, wherever that runs: a thread of the serving process or the writer process.

`BatchStore.write` prepares each row (``prepare``: the audit writer's redaction, say), inserts the
batch (`rows.store_rows`), and sends what the database will not take to the fallback file. It
returns a `Written`: plain counts and the rows nothing took, so that the `BatchWriter` on the event
loop can account for a batch the same way whether it was stored next door or in another process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, Table
from sqlalchemy.exc import IntegrityError

from gateway_common.writers.fallback import FallbackFile
from gateway_common.writers.rows import (
    Row,
    already_present,
    describe,
    encodable,
    holds_json,
    store_rows,
    unstorable,
)

logger = logging.getLogger("mcp_gateway.audit")


class Preparer(Protocol):
    """What a writer does to each row before it is stored. One that also has ``use(context)`` is told
    the writer's current context (the audit rules of the current policy) before a batch whose context
    changed; one with ``take_counts()`` reports what it counted (values redacted, say) since last asked."""

    def __call__(self, row: Row, /) -> Row: ...


@dataclass
class Written:
    """What became of one batch."""

    written: int = 0
    present: int = 0
    """Rows of a batch sent again that were already in the table (the first try had stored them)."""
    refused: int = 0
    diverted: int = 0
    stranded: list[Row] = field(default_factory=list)
    """Rows neither the database nor the fallback file took: the writer queues them again."""
    error: str | None = None
    """Why the database could not take the batch (None once it took or judged every row)."""
    counts: dict[str, int] = field(default_factory=dict)
    """What the preparation counted (``salvaged``, and whatever the preparer's ``take_counts`` says)."""


def _identity(row: Row) -> Row:
    return row


class BatchStore:
    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        prepare: Preparer | None = None,
        fallback_path: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.name = name or table.name
        self.prepare: Preparer = prepare or _identity
        self.fallback_path = Path(fallback_path) if fallback_path else None
        self.fallback = FallbackFile(self.fallback_path, table) if self.fallback_path else None
        self._json_columns = tuple(c.name for c in table.columns if holds_json(c))
        self._context: object = None

    def write(self, batch: list[Row], context: object = None, *, again: bool = False) -> Written:
        """Store a batch: database, else fallback file. ``context``: the preparer's, if it changed.
        ``again``: the batch was sent before and may be stored already (its rows are then skipped)."""
        if context is not None and context is not self._context:
            self._context = context
            use = getattr(self.prepare, "use", None)
            if use is not None:
                use(context)
        outcome = Written()
        rows = [self._prepared(row, outcome) for row in batch]
        take_counts = getattr(self.prepare, "take_counts", None)
        if take_counts is not None:
            for name, count in take_counts().items():
                outcome.counts[name] = outcome.counts.get(name, 0) + count
        stored = store_rows(self.engine, self.table, rows)
        outcome.written, outcome.error = stored.written, stored.error
        refused = stored.refused
        if again:
            refused = []
            for row, refusal in stored.refused:
                if isinstance(refusal, IntegrityError) and already_present(self.engine, self.table, row):
                    outcome.present += 1
                else:
                    refused.append((row, refusal))
        if refused:
            outcome.refused = len(refused)
            logger.error(
                "the database refused %d of %d %s rows (%s); keeping them in the fallback file",
                len(refused),
                len(rows),
                self.name,
                describe(refused[-1][1]),
            )
        unstored = [row for row, _ in refused] + stored.unavailable
        if unstored:
            outcome.stranded = self._divert(unstored, stored.error, outcome)
        return outcome

    def _prepared(self, row: Row, outcome: Written) -> Row:
        try:
            return self.prepare(row)
        except Exception as exc:
            reason = f"could not be prepared for the database: {describe(exc)}"
            outcome.counts["salvaged"] = outcome.counts.get("salvaged", 0) + 1
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
            return self.prepare(fixed)
        except Exception:
            return fixed

    def _divert(self, rows: list[Row], error: str | None, outcome: Written) -> list[Row]:
        """Append rows to the fallback file; returns them if the file cannot be written either."""
        if self.fallback is None:
            logger.error("%d %s rows were not stored and no fallback file is set", len(rows), self.name)
            return []
        try:
            self.fallback.append(rows)
        except OSError as exc:
            logger.critical(
                "could not write %d %s rows to the fallback file %s (%s); they stay queued",
                len(rows),
                self.name,
                self.fallback_path,
                describe(exc),
            )
            return rows
        outcome.diverted += len(rows)
        logger.error(
            "kept %d %s rows in %s for replay at the next start (%s)",
            len(rows),
            self.name,
            self.fallback_path,
            error or "refused by the database",
        )
        return []


def counted(target: Any, counts: dict[str, int]) -> None:
    """Add a batch's counts to the writer's attributes of the same names."""
    for name, count in counts.items():
        setattr(target, name, getattr(target, name, 0) + count)
