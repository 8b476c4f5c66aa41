"""The audit log table: one row per tools/call, resources/read, prompts/get and completion/complete,
including refused ones (``kind`` says which).

Query it with SQLModel, e.g.::

    from sqlmodel import Session, select, func
    from mcp_gateway.audit import ToolCall
    from gateway_common.db import make_engine

    with Session(make_engine("sqlite:///data/gateway.db")) as db:
        stmt = select(ToolCall.team, ToolCall.tool, func.count()).group_by(ToolCall.team, ToolCall.tool)
        print(db.exec(stmt).all())

Timestamps are timezone-aware UTC datetimes. ``status`` is one value of the closed
vocabulary `policies.outcomes.Outcome` (README, "The audit log", has the table); client
strings are clipped to the sizes in `policies.bounds` before they are stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from policies.outcomes import OUTCOMES

STATUSES = OUTCOMES
"""Every value ``ToolCall.status`` may hold: the one outcome vocabulary (model requests share it)."""


class ToolCall(SQLModel, table=True):
    __tablename__ = "tool_calls"
    __table_args__ = (
        Index("ix_tool_calls_key_time", "key_id", "timestamp"),
        Index("ix_tool_calls_team_tool", "team", "server", "tool"),
        # For the administrators' listings and reports (gateway_app.queries; revision 0003):
        Index("ix_tool_calls_team_time", "team", "timestamp"),
        Index("ix_tool_calls_status_time", "status", "timestamp"),
        Index("ix_tool_calls_server_tool_time", "server", "tool", "timestamp"),
        Index(
            "ix_tool_calls_activity", "timestamp", "key_id", "team", "server", "tool", "status", "client_name"
        ),
    )

    id: str = Field(primary_key=True, max_length=32, description="Unique id (hex), stable across retries.")
    timestamp: datetime = Field(index=True, description="When the call arrived (UTC).")
    request_id: str | None = Field(default=None, description="JSON-RPC id the client used (clipped).")
    key_id: str = Field(description="Virtual key id.")
    key_name: str
    team: str | None = None
    client_name: str | None = Field(default=None, description="From the client's clientInfo (clipped).")
    client_version: str | None = Field(default=None, description="From the client's clientInfo (clipped).")
    session_id: str | None = Field(default=None, description="Mcp-Session-Id (2025-11-25 clients only).")
    protocol_version: str | None = None
    kind: str = Field(
        default="tool",
        sa_column_kwargs={"server_default": "tool"},
        description="What was asked: tool (tools/call), resource (resources/read), prompt (prompts/get) "
        "or completion (completion/complete).",
    )
    exposed_name: str = Field(
        description="The name the client called: a tool or prompt name, a resource URI (the gateway's), "
        "or for a completion the prompt name or resource template (clipped to 256 characters)."
    )
    server: str | None = Field(
        default=None,
        description="Upstream server the name resolved to, also for one hidden from this key "
        "(status denied); empty when the name resolved to none.",
    )
    tool: str | None = Field(
        default=None, description="The upstream's own name: of the tool or prompt, or its resource URI."
    )
    arguments: Any = Field(default=None, sa_column=Column(JSON))
    arguments_truncated: bool = False
    result: Any = Field(default=None, sa_column=Column(JSON))
    result_truncated: bool = False
    status: str = Field(
        description="The outcome: ok, tool_error, denied, invalid_request, rate_limited, "
        "upstream_unavailable, upstream_error, timeout, cancelled or gateway_error."
    )
    error: str | None = Field(default=None, description="What went wrong (clipped to 1000 characters).")
    blocked_by: str | None = Field(
        default=None,
        description="For status rate_limited: the limit that refused, "
        "e.g. rate_limit:key:alice:tool_calls_per_minute.",
    )
    latency_ms: float = Field(description="From request arrival to answer, in the gateway.")
    upstream_latency_ms: float | None = Field(default=None, description="Time spent waiting on the upstream.")
    client_requests: int | None = Field(
        default=None,
        description="How many requests the upstream put to the client during the call (elicitation, "
        "sampling, roots); empty when none. Their content is not recorded.",
    )


class ToolCallRow(TypedDict):
    """One `ToolCall` row as the request path hands it to the writer (a plain dict, no model object:
    building a SQLModel instance per call would cost more than the rest of the audit). The writer
    caps ``arguments`` and ``result`` in its own thread. A test keeps the keys equal to the table's
    columns."""

    id: str
    timestamp: datetime
    request_id: str | None
    key_id: str
    key_name: str
    team: str | None
    client_name: str | None
    client_version: str | None
    session_id: str | None
    protocol_version: str | None
    kind: str
    exposed_name: str
    server: str | None
    tool: str | None
    arguments: Any
    arguments_truncated: bool
    result: Any
    result_truncated: bool
    status: str
    error: str | None
    blocked_by: str | None
    latency_ms: float
    upstream_latency_ms: float | None
    client_requests: int | None
