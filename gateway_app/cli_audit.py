"""``mcp-gateway audit``: list tool calls (the audit log) or model requests (the spend ledger),
newest first, filtered and paged; ``audit show ID`` prints one in full.

    mcp-gateway audit [--key K --team T --server S --tool N --client C --status S --since 7d ...]
    mcp-gateway audit requests [--key K --team T --model M --provider P --status S ...]
    mcp-gateway audit show ID
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gateway_app import cli_common as common
from gateway_app.cli_common import Column, usd
from gateway_app.queries import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    InvalidCursor,
    ModelRequestFilter,
    ModelRequestRecord,
    Page,
    ToolCallCount,
    ToolCallFilter,
    ToolCallRecord,
    count_tool_calls,
    csv_rows,
    get_model_request,
    get_tool_call,
    list_model_requests,
    list_tool_calls,
)
from policies.outcomes import OUTCOMES, Outcome, parse_outcome

TOOL_CALL_ONLY = ("server", "tool", "client", "summary")
REQUEST_ONLY = ("model", "provider")
FILTERS = ("key", "team", "status", "since", "until", "month", "week", "cursor", "all")

TOOL_CALL_COLUMNS = [
    Column("TIME (UTC)", lambda r: r.timestamp),
    Column("ID", lambda r: r.id),
    Column("KEY", lambda r: r.key_id),
    Column("TEAM", lambda r: r.team),
    Column("CALLED", lambda r: r.exposed_name),
    Column("SERVER/TOOL", lambda r: f"{r.server}/{r.tool}" if r.server else None),
    Column("STATUS", lambda r: r.status),
    Column("MS", lambda r: f"{r.latency_ms:.1f}", numeric=True),
    Column("CLIENT", lambda r: r.client_name),
    Column("ERROR / BLOCKED BY", lambda r: r.blocked_by or r.error),
]
REQUEST_COLUMNS = [
    Column("TIME (UTC)", lambda r: r.timestamp),
    Column("ID", lambda r: r.request_id),
    Column("KEY", lambda r: r.key_id),
    Column("TEAM", lambda r: r.team),
    Column("MODEL", lambda r: r.served_model or r.requested_model),
    Column("PROVIDER", lambda r: r.provider),
    Column("STATUS", lambda r: r.status),
    Column("IN", lambda r: r.input_tokens, numeric=True),
    Column("OUT", lambda r: r.output_tokens, numeric=True),
    Column("COST", lambda r: usd(r.cost_usd), numeric=True),
    Column("MS", lambda r: f"{r.latency_ms:.0f}", numeric=True),
    Column("ERROR / BLOCKED BY", lambda r: r.blocked_by or r.error),
]
COUNT_COLUMNS = [
    Column("KEY", lambda r: r.key_id),
    Column("TEAM", lambda r: r.team),
    Column("SERVER", lambda r: r.server),
    Column("TOOL", lambda r: r.tool),
    Column("STATUS", lambda r: r.status),
    Column("CALLS", lambda r: r.calls, numeric=True),
]


def outcome(text: str) -> Outcome:
    """``--status``: one value of the outcome vocabulary, in any case (``Rate-Limited``)."""
    try:
        return parse_outcome(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def page_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"a page holds 1 to {MAX_PAGE_SIZE} rows, not {value}")
    return value


def cmd_audit(args: argparse.Namespace) -> int:
    words = list(args.target)
    if words[:1] == ["show"] and len(words) == 2:
        _refuse(args, "audit show", (*TOOL_CALL_ONLY, *REQUEST_ONLY, *FILTERS))
        return _show(args, words[1])
    if words == ["prune"]:
        from gateway_app.cli_prune import cmd_prune

        return cmd_prune(args)
    if words == ["requests"]:
        _refuse(args, "audit requests", TOOL_CALL_ONLY)
        return _list_requests(args)
    if words:
        raise SystemExit(
            f"mcp-gateway audit: {' '.join(words)!r}? Give `show ID`, `requests`, `prune` or nothing"
        )
    _refuse(args, "audit (tool calls)", REQUEST_ONLY)
    filters = ToolCallFilter(
        key=args.key,
        team=args.team,
        server=args.server,
        tool=args.tool,
        client=args.client,
        statuses=tuple(args.status or ()),
        period=common.period_of(args, None),
    )
    engine = common.engine_of(args)
    try:
        if args.summary:
            rows = count_tool_calls(engine, filters)
            common.emit(rows, rows, ToolCallCount, COUNT_COLUMNS, args.output, empty="no tool calls match")
            return 0
        return _listing(
            args,
            lambda cursor, limit: list_tool_calls(engine, filters, limit=limit, cursor=cursor),
            ToolCallRecord,
            TOOL_CALL_COLUMNS,
            "tool calls",
        )
    finally:
        engine.dispose()


def _list_requests(args: argparse.Namespace) -> int:
    filters = ModelRequestFilter(
        key=args.key,
        team=args.team,
        model=args.model,
        provider=args.provider,
        statuses=tuple(args.status or ()),
        period=common.period_of(args, None),
    )
    engine = common.engine_of(args)
    try:
        return _listing(
            args,
            lambda cursor, limit: list_model_requests(engine, filters, limit=limit, cursor=cursor),
            ModelRequestRecord,
            REQUEST_COLUMNS,
            "model requests",
        )
    finally:
        engine.dispose()


def _refuse(args: argparse.Namespace, what: str, names: tuple[str, ...]) -> None:
    given = [name for name in names if getattr(args, name, None) not in (None, False)]
    if given:
        raise SystemExit(f"mcp-gateway: {what} takes no {', '.join(f'--{name}' for name in given)}")


def _listing(
    args: argparse.Namespace,
    fetch: Callable[[str | None, int], Page[Any]],
    row_type: type,
    columns: list[Column],
    what: str,
) -> int:
    """One page (``--limit``, ``--cursor``), or every page after it (``--all``)."""
    empty = f"no {what} match"
    try:
        if not args.all:
            page = fetch(args.cursor, args.limit)
            common.emit(page, page.items, row_type, columns, args.output, empty=empty)
            if page.next_cursor and args.output == "table":
                common.note(f"more: add --cursor {page.next_cursor} (or --all)")
            return 0
        items: list[Any] = []
        cursor, first = args.cursor, True
        while True:
            page = fetch(cursor, MAX_PAGE_SIZE)
            if args.output == "csv":  # streamed: a long period's dump never sits in memory
                rows = csv_rows(page.items, row_type)
                if not first:
                    next(rows)  # the header, once
                common.print_csv(rows)
                first = False
            else:
                items += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        if args.output != "csv":
            common.emit(Page(items, None, len(items)), items, row_type, columns, args.output, empty=empty)
        return 0
    except InvalidCursor as exc:
        raise SystemExit(f"mcp-gateway: --cursor: {exc}") from None


def _show(args: argparse.Namespace, ident: str) -> int:
    engine = common.engine_of(args)
    try:
        call = get_tool_call(engine, ident)
        request = get_model_request(engine, ident) if call is None else None
    finally:
        engine.dispose()
    if call is None and request is None:
        common.note(f"no tool call and no model request has the id {ident!r}")
        return 1
    found: Any = call if call is not None else request
    if args.output == "json":
        common.print_json(found)
    elif args.output == "csv":
        common.print_csv(csv_rows([found], type(found)))
    elif call is not None:
        blocks = {"arguments": call.arguments, "result": call.result}
        common.print_fields(call.call, blocks)
        for name in ("arguments", "result"):
            if getattr(call, f"{name}_truncated"):
                common.note(f"({name} truncated: stored up to gateway.audit.max_{name}_bytes)")
    else:
        common.print_fields(found)
    return 0


def register_audit(sub: Any) -> argparse.ArgumentParser:
    audit: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="the audit log and the spend ledger: list tool calls or model requests, show one",
        description="Tool calls, newest first; `audit requests`: model requests; `audit show ID`: one "
        "tool call with its arguments and result, or one model request. Read only.",
    )
    audit.add_argument(
        "target",
        nargs="*",
        metavar="show ID | requests | prune",
        help="nothing: tool calls; `requests`: model requests; `show ID`: one of either, in full; "
        "`prune`: delete rows older than their retention",
    )
    filters = audit.add_argument_group("filters (every one given must match)")
    filters.add_argument("--key", metavar="ID", help="only this virtual key")
    filters.add_argument("--team", help="only this team")
    filters.add_argument("--server", help="tool calls: only to this upstream server")
    filters.add_argument("--tool", help="tool calls: only to this upstream tool (its own name)")
    filters.add_argument(
        "--client", help="tool calls: only from this MCP client (clientInfo name, e.g. claude-code)"
    )
    filters.add_argument("--model", help="model requests: only for this model (asked for or served)")
    filters.add_argument("--provider", help="model requests: only answered by this provider")
    filters.add_argument(
        "--status",
        type=outcome,
        action="append",
        metavar="STATUS",
        help=f"only this outcome, in any case; repeat for several: {', '.join(OUTCOMES)}",
    )
    common.add_period_flags(audit, None)
    paging = audit.add_argument_group("paging")
    paging.add_argument(
        "--limit",
        type=page_limit,
        default=DEFAULT_PAGE_SIZE,
        metavar="N",
        help=f"rows per page (default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE})",
    )
    paging.add_argument("--cursor", help="the next page: the cursor the previous page printed")
    paging.add_argument("--all", action="store_true", help="every page (from --cursor, if given), not one")
    audit.add_argument(
        "--summary", action="store_true", help="tool calls counted per key, team, server, tool and status"
    )
    common.add_output_flags(audit)
    common.add_database_flags(audit)
    audit.set_defaults(func=cmd_audit)
    return audit
