"""The last policy reloads and their results, newest first (every gateway on the database)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from gateway_app.reload_log import PolicyReload


def recent_reloads(engine: Engine, *, limit: int = 50, instance: str | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` attempts (of one ``instance``, host:PID, if given) as the admin API shows them."""
    query = select(PolicyReload).order_by(col(PolicyReload.started_at).desc()).limit(max(1, min(limit, 1000)))
    if instance is not None:
        query = query.where(PolicyReload.instance == instance)
    with Session(engine) as db:
        rows = db.exec(query).all()
    return [
        {
            "id": row.id,
            "started_at": row.started_at.isoformat(),
            "instance": row.instance,
            "trigger": row.trigger,
            "outcome": row.outcome,
            "source": row.source,
            "snapshot_version": row.snapshot_version,
            "duration_ms": row.duration_ms,
            "swap_ms": row.swap_ms,
            "changes": row.changes or {},
            "errors": row.errors or [],
            "warnings": row.warnings or [],
        }
        for row in rows
    ]
