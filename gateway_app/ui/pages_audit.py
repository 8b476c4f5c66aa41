"""Tool calls: the audit log filtered (key, team, server, tool, status, time) and paged newest
first, and one call in full, its arguments and result as stored (redacted where the policy says)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway_app.queries import InvalidCursor, ToolCallFilter, get_tool_call, list_tool_calls
from gateway_app.ui import periods
from gateway_app.ui.web import View
from policies.bounds import clip
from policies.outcomes import OUTCOMES, Outcome

PAGE_SIZE = 50
FILTERS = ("key", "team", "server", "tool", "status", "since", "until")
SHOWN_JSON_CHARS = 200_000


async def tool_calls(view: View) -> Response:
    args = {name: view.arg(name) for name in FILTERS}
    problems = []
    status = args["status"]
    statuses: tuple[Outcome, ...] = ()
    if status is not None:
        if status in OUTCOMES:
            statuses = (Outcome(status),)
        else:
            problems.append(f"unknown status {clip(status, 40)!r}")
            args["status"] = None
    period, error = periods.requested(view.now, args, None)
    if error:
        problems.append(error)
    filters = ToolCallFilter(
        key=args["key"],
        team=args["team"],
        server=args["server"],
        tool=args["tool"],
        statuses=statuses,
        period=period,
    )
    cursor = view.arg("cursor")
    try:
        page = await view.db(list_tool_calls, view.engine, filters, limit=PAGE_SIZE, cursor=cursor)
    except InvalidCursor:
        problems.append("that page link is not valid any more: showing the newest calls")
        cursor = None
        page = await view.db(list_tool_calls, view.engine, filters, limit=PAGE_SIZE)
    filtered = any(value for value in args.values())
    return view.render(
        "tool_calls.html",
        status=400 if problems else 200,
        active="tool-calls",
        error="; ".join(problems) or None,
        page=page,
        args=args,
        outcomes=OUTCOMES,
        filtered=filtered,
        first_page=cursor is None,
        period=period,
    )


def pretty(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    return clip(text, SHOWN_JSON_CHARS)


async def tool_call(view: View) -> Response:
    call_id = str(view.request.path_params["call_id"])[:64]
    detail = await view.db(get_tool_call, view.engine, call_id)
    if detail is None:
        return view.render(
            "refused.html",
            status=404,
            active="tool-calls",
            message=f"No tool call {call_id!r} in the audit log (it may have been pruned).",
        )
    return view.render(
        "tool_call.html",
        active="tool-calls",
        detail=detail,
        call=detail.call,
        arguments=pretty(detail.arguments),
        result=pretty(detail.result),
    )
