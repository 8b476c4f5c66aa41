"""The audit log (`tool_calls`): a filtered, paged listing, newest first, and one call in full."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from gateway_app.queries.base import (
    DEFAULT_PAGE_SIZE,
    Database,
    Page,
    as_utc,
    connect,
    encode_cursor,
    group_keys,
    newest_first,
    within,
)
from gateway_app.queries.period import Period
from mcp_gateway.audit.models import ToolCall
from policies.outcomes import Outcome

_C = ToolCall.__table__.c  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ToolCallFilter:
    """Which tool calls: every field left empty matches all. ``statuses`` matches any of them."""

    key: str | None = None
    team: str | None = None
    server: str | None = None
    tool: str | None = None
    client: str | None = None
    """The client's name from its clientInfo (``claude-code`` for Claude Code)."""
    statuses: tuple[Outcome, ...] = ()
    period: Period = field(default_factory=Period.all_time)

    def apply(self, stmt: Any) -> Any:
        for column, value in (
            (_C.key_id, self.key),
            (_C.team, self.team),
            (_C.server, self.server),
            (_C.tool, self.tool),
            (_C.client_name, self.client),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if len(self.statuses) == 1:
            stmt = stmt.where(_C.status == self.statuses[0].value)
        elif self.statuses:
            stmt = stmt.where(_C.status.in_([status.value for status in self.statuses]))
        return within(stmt, _C.timestamp, self.period)


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One row of the audit log without its arguments and result (`get_tool_call` has those)."""

    id: str
    timestamp: datetime
    key_id: str
    key_name: str
    team: str | None
    client_name: str | None
    client_version: str | None
    exposed_name: str
    server: str | None
    tool: str | None
    status: str
    error: str | None
    blocked_by: str | None
    latency_ms: float
    upstream_latency_ms: float | None
    request_id: str | None
    session_id: str | None
    protocol_version: str | None


@dataclass(frozen=True, slots=True)
class ToolCallDetail:
    """One tool call in full: the record, its arguments and its result (each possibly truncated)."""

    call: ToolCallRecord
    arguments: Any
    arguments_truncated: bool
    result: Any
    result_truncated: bool


_NAMES = [f.name for f in fields(ToolCallRecord)]
_RECORD_COLUMNS = [_C[name] for name in _NAMES]


def _record(row: Sequence[Any]) -> ToolCallRecord:
    values = dict(zip(_NAMES, row, strict=True))
    values["timestamp"] = as_utc(values["timestamp"])
    return ToolCallRecord(**values)


def list_tool_calls(
    database: Database,
    filters: ToolCallFilter | None = None,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[ToolCallRecord]:
    """A page of tool calls, newest first (ties in time by id), after ``cursor`` when given.

    Raises `ValueError` for a ``limit`` outside 1..`MAX_PAGE_SIZE` and `InvalidCursor`.
    """
    stmt = (filters or ToolCallFilter()).apply(select(*_RECORD_COLUMNS))
    stmt = newest_first(stmt, _C.timestamp, _C.id, limit, cursor)
    with connect(database) as connection:
        rows = connection.execute(stmt).all()
    items = [_record(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(items[-1].timestamp, items[-1].id) if more else None, limit)


def get_tool_call(database: Database, call_id: str) -> ToolCallDetail | None:
    """The tool call with this id, arguments and result included; None when there is none."""
    extra = [_C.arguments, _C.arguments_truncated, _C.result, _C.result_truncated]
    stmt = select(*_RECORD_COLUMNS, *extra).where(_C.id == call_id)
    with connect(database) as connection:
        row = connection.execute(stmt).first()
    if row is None:
        return None
    width = len(_RECORD_COLUMNS)
    arguments, arguments_truncated, result, result_truncated = row[width:]
    return ToolCallDetail(
        _record(row[:width]), arguments, bool(arguments_truncated), result, bool(result_truncated)
    )


@dataclass(frozen=True, slots=True)
class ToolCallCount:
    """How many calls one key made to one tool with one outcome."""

    key_id: str
    team: str | None
    server: str | None
    tool: str | None
    status: str
    calls: int


def count_tool_calls(database: Database, filters: ToolCallFilter | None = None) -> list[ToolCallCount]:
    """The matching calls counted per key, team, server, tool and status; most calls first."""
    columns = (_C.key_id, _C.team, _C.server, _C.tool, _C.status)
    stmt = (filters or ToolCallFilter()).apply(select(*columns, func.count())).group_by(*group_keys(*columns))
    with connect(database) as connection:
        rows = [
            ToolCallCount(key_id, team, server, tool, status, int(calls))
            for key_id, team, server, tool, status, calls in connection.execute(stmt)
        ]
    rows.sort(key=lambda r: (-r.calls, r.key_id, r.team or "", r.server or "", r.tool or "", r.status))
    return rows
