"""Ready-made audit questions for the CLI (and an example of querying `ToolCall` with SQLModel)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from mcp_gateway.audit.models import ToolCall

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``15m``, ``2h``, ``7d`` (relative to now) or an ISO timestamp (UTC if it has no zone)."""
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--since: {text!r} is neither like 15m/2h/7d nor an ISO timestamp") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def recent_calls(
    engine: Engine,
    *,
    since: datetime | None = None,
    key_id: str | None = None,
    team: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[ToolCall]:
    stmt = select(ToolCall).order_by(col(ToolCall.timestamp).desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(ToolCall.timestamp >= since)
    if key_id is not None:
        stmt = stmt.where(ToolCall.key_id == key_id)
    if team is not None:
        stmt = stmt.where(ToolCall.team == team)
    if status is not None:
        stmt = stmt.where(ToolCall.status == status)
    with Session(engine) as db:
        return list(db.exec(stmt).all())


def summary(
    engine: Engine,
    *,
    since: datetime | None = None,
    key_id: str | None = None,
    team: str | None = None,
    status: str | None = None,
) -> Sequence[Any]:
    """Calls per key, team, server, tool and status."""
    columns = (
        col(ToolCall.key_id),
        col(ToolCall.team),
        col(ToolCall.server),
        col(ToolCall.tool),
        col(ToolCall.status),
    )
    stmt = sa_select(*columns, func.count()).group_by(*columns)
    if since is not None:
        stmt = stmt.where(col(ToolCall.timestamp) >= since)
    if key_id is not None:
        stmt = stmt.where(col(ToolCall.key_id) == key_id)
    if team is not None:
        stmt = stmt.where(col(ToolCall.team) == team)
    if status is not None:
        stmt = stmt.where(col(ToolCall.status) == status)
    with engine.connect() as conn:
        return list(conn.execute(stmt.order_by(func.count().desc())).all())
