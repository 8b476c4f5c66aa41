"""The audit log table: one row per tools/call, including refused ones.

Query it with SQLModel, e.g.::

    from sqlmodel import Session, select, func
    from mcp_gateway.audit import ToolCall
    from mcp_gateway.db import make_engine

    with Session(make_engine("sqlite:///data/gateway.db")) as db:
        stmt = select(ToolCall.team, ToolCall.tool, func.count()).group_by(ToolCall.team, ToolCall.tool)
        print(db.exec(stmt).all())

Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

STATUSES = ("ok", "tool_error", "denied", "upstream_error", "timeout", "cancelled")


class ToolCall(SQLModel, table=True):
    __tablename__ = "tool_calls"
    __table_args__ = (
        Index("ix_tool_calls_key_time", "key_id", "timestamp"),
        Index("ix_tool_calls_team_tool", "team", "server", "tool"),
    )

    id: str = Field(primary_key=True, max_length=32, description="Unique id (hex), stable across retries.")
    timestamp: datetime = Field(index=True, description="When the call arrived (UTC).")
    request_id: str | None = Field(default=None, description="JSON-RPC id the client used.")
    key_id: str = Field(description="Virtual key id.")
    key_name: str
    team: str | None = None
    client_name: str | None = None
    client_version: str | None = None
    session_id: str | None = Field(default=None, description="Mcp-Session-Id (2025-11-25 clients only).")
    protocol_version: str | None = None
    exposed_name: str = Field(description="The tool name the client called.")
    server: str | None = Field(
        default=None, description="Upstream server; empty when the name resolved to none."
    )
    tool: str | None = Field(default=None, description="The upstream's own tool name.")
    arguments: Any = Field(default=None, sa_column=Column(JSON))
    arguments_truncated: bool = False
    result: Any = Field(default=None, sa_column=Column(JSON))
    result_truncated: bool = False
    status: str = Field(description="ok, tool_error, denied, upstream_error, timeout or cancelled.")
    error: str | None = None
    latency_ms: float = Field(description="From request arrival to answer, in the gateway.")
    upstream_latency_ms: float | None = Field(default=None, description="Time spent waiting on the upstream.")
