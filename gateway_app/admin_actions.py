"""The record of every change an administrator makes (``admin_actions``), whichever door it came through.

The admin API and the dashboard both change live state: keys (create, update, rotate,
revoke) and the policy (reload). Each change is one row saying who (the admin token's
id and role, never its secret), through which door (``api``, ``ui``, ``cli``), what was
done to what, and how it ended. Both doors call `AdminActions.record` after acting, so
the same action leaves the same row whichever door was used.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import JSON, Column, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, select

from policies.admin import AdminIdentity
from policies.bounds import clip

logger = logging.getLogger("gateway_app.admin")

Door = Literal["api", "ui", "cli"]
ActionOutcome = Literal["ok", "refused", "failed"]
MAX_DETAIL_CHARS = 2000


class AdminAction(SQLModel, table=True):
    """One change made by an administrator (``admin_actions``)."""

    __tablename__ = "admin_actions"

    id: str = Field(primary_key=True, max_length=32, description="Unique id (hex).")
    at: datetime = Field(index=True, description="When it was done (UTC).")
    actor: str = Field(max_length=128, description="The admin token's id (never its secret).")
    role: str = Field(max_length=16, description="The token's role: admin or auditor.")
    door: str = Field(max_length=8, description="Where it came from: api, ui or cli.")
    action: str = Field(
        max_length=64, index=True, description="What was done, e.g. key.create, policy.reload."
    )
    target: str | None = Field(default=None, max_length=256, description="What it was done to (a key id).")
    outcome: str = Field(max_length=16, description="ok, refused or failed.")
    detail: Any = Field(default=None, sa_column=Column(JSON), description="What changed (never a secret).")


@dataclass(frozen=True)
class ActionRecord:
    at: datetime
    actor: str
    role: str
    door: Door
    action: str
    target: str | None
    outcome: ActionOutcome
    detail: dict[str, Any] | None = None
    id: str = ""

    def row(self) -> AdminAction:
        detail = self.detail
        if detail is not None and len(repr(detail)) > MAX_DETAIL_CHARS:
            detail = {"summary": clip(repr(detail), MAX_DETAIL_CHARS)}
        return AdminAction(
            id=self.id or uuid.uuid4().hex,
            at=self.at,
            actor=clip(self.actor, 128),
            role=self.role,
            door=self.door,
            action=clip(self.action, 64),
            target=None if self.target is None else clip(self.target, 256),
            outcome=self.outcome,
            detail=detail,
        )


class AdminActions:
    """Writes `AdminAction` rows off the event loop; a database error is logged, never raised to the
    caller (the change itself has already happened)."""

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine

    async def record(
        self,
        who: AdminIdentity,
        door: Door,
        action: str,
        target: str | None,
        outcome: ActionOutcome = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        record = ActionRecord(
            at=datetime.now(UTC),
            actor=who.token_id,
            role=who.role.value,
            door=door,
            action=action,
            target=target,
            outcome=outcome,
            detail=detail,
        )
        logger.info(
            "admin action %s on %s by %s via %s: %s", action, target or "-", who.token_id, door, outcome
        )
        if self.engine is None:
            return
        try:
            await asyncio.to_thread(self._store, record)
        except SQLAlchemyError as exc:
            logger.error("could not record admin action %s in the database: %s", action, exc)

    def _store(self, record: ActionRecord) -> None:
        assert self.engine is not None
        with Session(self.engine) as db:
            db.add(record.row())
            db.commit()

    def recent(self, limit: int = 100) -> list[AdminAction]:
        """Newest first (blocking; call from a thread)."""
        if self.engine is None:
            return []
        with Session(self.engine) as db:
            query = select(AdminAction).order_by(col(AdminAction.at).desc()).limit(limit)
            return list(db.exec(query))
