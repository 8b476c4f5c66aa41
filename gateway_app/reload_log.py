"""The record of every policy reload attempt: kept in memory (the last few) and in ``policy_reloads``.

An administrator asks "did my change apply?": each attempt says when, what started it
(``signal``, ``api``, ``watch``), how it ended, the errors that refused it (file, line,
path) or a summary of what changed, and the snapshot version it produced. Rows are
written off the event loop; a database that refuses one loses nothing in memory and
is logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import JSON, Column, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel

from gateway_app.reload_worker import ReloadWorker
from policies.bounds import MAX_ERROR_CHARS, clip

logger = logging.getLogger("gateway_app.reload")

Trigger = Literal["signal", "api", "ui", "watch", "peer"]
"""``peer``: another replica reloaded the same file and said so on the change bus (`gateway_app.peers`)."""
HISTORY_SIZE = 50
"""Attempts kept in memory for the admin API (the table keeps them all)."""
MAX_MESSAGES = 50
"""Errors or warnings kept per attempt (a file with more problems is summarised)."""
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"[:128]


class ReloadOutcome(StrEnum):
    APPLIED = "applied"
    """The new policy is in force (``restart_required`` lists settings that kept their old value)."""
    UNCHANGED = "unchanged"
    """The file says what is already in force: nothing was swapped."""
    REFUSED = "refused"
    """The file is invalid (syntax, unknown field, bad reference): the old policy stays in force."""
    FAILED = "failed"
    """The gateway could not apply a valid file (a bug or a resource error): the old policy stays."""


class PolicyReload(SQLModel, table=True):
    """One reload attempt (``policy_reloads``)."""

    __tablename__ = "policy_reloads"

    id: str = Field(primary_key=True, max_length=32, description="Unique id (hex).")
    started_at: datetime = Field(index=True, description="When the attempt started (UTC).")
    instance: str = Field(max_length=128, description="Which gateway process: host name and PID.")
    trigger: str = Field(
        max_length=16, description="What started it: signal, api, ui (the dashboard), watch or peer."
    )
    outcome: str = Field(max_length=16, description="applied, unchanged, refused or failed.")
    source: str | None = Field(default=None, max_length=1000, description="The policy file read.")
    snapshot_version: int | None = Field(
        default=None, description="The snapshot in force afterwards (counted per process)."
    )
    duration_ms: float = Field(description="The whole attempt: reading, starting servers, swapping.")
    swap_ms: float | None = Field(default=None, description="Building and swapping the snapshot alone.")
    changes: Any = Field(default=None, sa_column=Column(JSON), description="What changed (names only).")
    errors: Any = Field(default=None, sa_column=Column(JSON), description="Why it was refused or failed.")
    warnings: Any = Field(default=None, sa_column=Column(JSON), description="What an admin should know.")


@dataclass(frozen=True)
class ReloadRecord:
    """The result of one attempt, as the admin API shows it."""

    id: str
    started_at: datetime
    trigger: Trigger
    outcome: ReloadOutcome
    source: str | None
    snapshot_version: int
    duration_ms: float
    swap_ms: float | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    instance: str = INSTANCE

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "instance": self.instance,
            "trigger": self.trigger,
            "outcome": self.outcome.value,
            "source": self.source,
            "snapshot_version": self.snapshot_version,
            "duration_ms": round(self.duration_ms, 3),
            "swap_ms": None if self.swap_ms is None else round(self.swap_ms, 3),
            "changes": self.changes,
            "errors": self.errors,
            "warnings": self.warnings,
        }

    def row(self) -> PolicyReload:
        return PolicyReload(
            id=self.id,
            started_at=self.started_at,
            instance=self.instance,
            trigger=self.trigger,
            outcome=self.outcome.value,
            source=clip(self.source, 1000),
            snapshot_version=self.snapshot_version,
            duration_ms=self.duration_ms,
            swap_ms=self.swap_ms,
            changes=self.changes or None,
            errors=self.errors or None,
            warnings=self.warnings or None,
        )


def bounded(messages: list[str]) -> list[str]:
    """At most `MAX_MESSAGES` messages of at most `MAX_ERROR_CHARS` characters each."""
    kept = [clip(m, MAX_ERROR_CHARS) for m in messages[:MAX_MESSAGES]]
    if len(messages) > MAX_MESSAGES:
        kept.append(f"… and {len(messages) - MAX_MESSAGES} more")
    return kept


class ReloadLog:
    """The last `HISTORY_SIZE` attempts in memory, every attempt in the database."""

    def __init__(self, engine: Engine | None, worker: ReloadWorker | None = None) -> None:
        self.engine = engine
        self.worker = worker
        """Writes rows in the reload's own thread when given (`ReloadWorker`), else in asyncio's."""
        self._recent: deque[ReloadRecord] = deque(maxlen=HISTORY_SIZE)

    def recent(self) -> list[ReloadRecord]:
        """Newest first."""
        return list(reversed(self._recent))

    async def add(self, record: ReloadRecord) -> None:
        self._recent.append(record)
        if self.engine is None:
            return
        try:
            if self.worker is not None:
                await self.worker.run(lambda: self._store(record))
            else:
                await asyncio.to_thread(self._store, record)
        except SQLAlchemyError as exc:
            logger.error("could not record policy reload %s in the database: %s", record.id, exc)

    def _store(self, record: ReloadRecord) -> None:
        assert self.engine is not None
        with Session(self.engine) as db:
            db.add(record.row())
            db.commit()


def now() -> datetime:
    return datetime.now(UTC)
