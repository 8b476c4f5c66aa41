"""The questions administrators ask of the gateway's database, answered once for everyone: the CLI
(``mcp-gateway audit``, ``mcp-gateway report``), the admin API and the dashboard call these functions
and never a second copy of a query.

Each is a plain function taking a `Database` (engine, connection or session) and typed filters or a
`Period`, returning dataclasses that `to_json` renders; none of them writes.
"""

from gateway_app.queries.activity import (
    KeyActivity,
    KeyOrder,
    ToolsReport,
    ToolUsage,
    TopKeys,
    team_tools,
    top_keys,
)
from gateway_app.queries.audit import (
    ToolCallCount,
    ToolCallDetail,
    ToolCallFilter,
    ToolCallRecord,
    count_tool_calls,
    get_tool_call,
    list_tool_calls,
)
from gateway_app.queries.base import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Database, InvalidCursor, Page
from gateway_app.queries.budgets import BudgetsReport, BudgetStatus, RaisedAlert, budget_status
from gateway_app.queries.limits import LimitHit, LimitsReport, limits
from gateway_app.queries.period import Period, PeriodError, parse_moment, parse_period
from gateway_app.queries.requests import (
    ModelRequestFilter,
    ModelRequestRecord,
    get_model_request,
    list_model_requests,
)
from gateway_app.queries.serialise import csv_header, csv_rows, to_json, to_plain
from gateway_app.queries.spend import DailySpend, SpendDimension, SpendReport, SpendRow, spend

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "BudgetStatus",
    "BudgetsReport",
    "DailySpend",
    "Database",
    "InvalidCursor",
    "KeyActivity",
    "KeyOrder",
    "LimitHit",
    "LimitsReport",
    "ModelRequestFilter",
    "ModelRequestRecord",
    "Page",
    "Period",
    "PeriodError",
    "RaisedAlert",
    "SpendDimension",
    "SpendReport",
    "SpendRow",
    "ToolCallCount",
    "ToolCallDetail",
    "ToolCallFilter",
    "ToolCallRecord",
    "ToolUsage",
    "ToolsReport",
    "TopKeys",
    "budget_status",
    "count_tool_calls",
    "csv_header",
    "csv_rows",
    "get_model_request",
    "get_tool_call",
    "limits",
    "list_model_requests",
    "list_tool_calls",
    "parse_moment",
    "parse_period",
    "spend",
    "team_tools",
    "to_json",
    "to_plain",
    "top_keys",
]
