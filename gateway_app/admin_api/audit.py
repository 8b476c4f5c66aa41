"""``/admin/audit``: the audit log (tool calls) and the spend ledger (model requests), with the CLI's
filters (``mcp-gateway audit``), newest first and paged, and one record in full by id.

Every answer is `gateway_app.queries`' own result rendered by `to_plain`: a page is
``{items, next_cursor, limit}``, exactly what ``audit --json`` prints.
"""

from __future__ import annotations

from gateway_app.admin_api.errors import NotFound
from gateway_app.admin_api.operation import Call, Operation, Param, Reply
from gateway_app.admin_api.params import (
    PAGING_PARAMS,
    STATUS_PARAM,
    filter_param,
    limit_of,
    period_of,
    period_params,
    statuses_of,
    text,
)
from gateway_app.queries import (
    ModelRequestFilter,
    ToolCallFilter,
    count_tool_calls,
    get_model_request,
    get_tool_call,
    list_model_requests,
    list_tool_calls,
    to_plain,
)


def _tool_call_filter(call: Call) -> ToolCallFilter:
    return ToolCallFilter(
        key=text(call, "key"),
        team=text(call, "team"),
        server=text(call, "server"),
        tool=text(call, "tool"),
        client=text(call, "client"),
        statuses=statuses_of(call),
        period=period_of(call, None),
    )


async def tool_calls(call: Call) -> Reply:
    filters, limit, cursor = _tool_call_filter(call), limit_of(call), call.query("cursor")
    engine = call.runtime.engine
    page = await call.db(lambda: list_tool_calls(engine, filters, limit=limit, cursor=cursor))
    return Reply(to_plain(page))


async def tool_call_summary(call: Call) -> Reply:
    filters, engine = _tool_call_filter(call), call.runtime.engine
    return Reply({"rows": to_plain(await call.db(lambda: count_tool_calls(engine, filters)))})


async def tool_call(call: Call) -> Reply:
    ident, engine = call.path("call_id"), call.runtime.engine
    found = await call.db(lambda: get_tool_call(engine, ident))
    if found is None:
        raise NotFound(f"no tool call has the id {ident[:64]!r}")
    return Reply(to_plain(found))


async def model_requests(call: Call) -> Reply:
    filters = ModelRequestFilter(
        key=text(call, "key"),
        team=text(call, "team"),
        model=text(call, "model"),
        provider=text(call, "provider"),
        statuses=statuses_of(call),
        period=period_of(call, None),
    )
    limit, cursor, engine = limit_of(call), call.query("cursor"), call.runtime.engine
    page = await call.db(lambda: list_model_requests(engine, filters, limit=limit, cursor=cursor))
    return Reply(to_plain(page))


async def model_request(call: Call) -> Reply:
    ident, engine = call.path("request_id"), call.runtime.engine
    found = await call.db(lambda: get_model_request(engine, ident))
    if found is None:
        raise NotFound(f"no model request has the id {ident[:64]!r}")
    return Reply(to_plain(found))


_WHO = (filter_param("key", "Only this virtual key."), filter_param("team", "Only this team."))
_TOOL_FILTERS = (
    *_WHO,
    filter_param("server", "Only calls to this upstream server."),
    filter_param("tool", "Only calls to this upstream tool (its own name)."),
    filter_param("client", "Only calls from this MCP client (clientInfo name, e.g. claude-code)."),
    STATUS_PARAM,
    *period_params(None),
)
_PAGE = "A page, newest first: `{items, next_cursor, limit}` as `mcp-gateway audit --json`."

OPERATIONS = (
    Operation(
        "GET",
        "/admin/audit/tool-calls",
        tool_calls,
        "Tool calls (the audit log), filtered, newest first, paged",
        "audit",
        params=(*_TOOL_FILTERS, *PAGING_PARAMS),
        responses={200: _PAGE},
    ),
    Operation(
        "GET",
        "/admin/audit/tool-calls/summary",
        tool_call_summary,
        "Tool calls counted per key, team, server, tool and status",
        "audit",
        params=_TOOL_FILTERS,
        responses={200: "`{rows: [...]}` as `mcp-gateway audit --summary --json`."},
    ),
    Operation(
        "GET",
        "/admin/audit/tool-calls/{call_id}",
        tool_call,
        "One tool call in full, arguments and result included",
        "audit",
        params=(Param("call_id", {"type": "string"}, "The call's id.", where="path", required=True),),
        responses={200: "As `mcp-gateway audit show ID --json`."},
    ),
    Operation(
        "GET",
        "/admin/audit/model-requests",
        model_requests,
        "Model requests (the spend ledger), filtered, newest first, paged",
        "audit",
        params=(
            *_WHO,
            filter_param("model", "Only this model (asked for or served)."),
            filter_param("provider", "Only answered by this provider."),
            STATUS_PARAM,
            *period_params(None),
            *PAGING_PARAMS,
        ),
        responses={200: _PAGE},
    ),
    Operation(
        "GET",
        "/admin/audit/model-requests/{request_id}",
        model_request,
        "One model request (its gateway-request-id)",
        "audit",
        params=(Param("request_id", {"type": "string"}, "The request's id.", where="path", required=True),),
        responses={200: "As `mcp-gateway audit show ID --json`."},
    ),
)
