"""``/admin/health``: what ``/readyz`` shows an operator (each upstream's state, the row writers);
``/admin/actions``: the record of every change made by an administrator, newest first, paged."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from gateway_app.admin_actions import AdminAction
from gateway_app.admin_api.operation import Call, Operation, Reply
from gateway_app.admin_api.params import PAGING_PARAMS, filter_param, limit_of, text
from gateway_app.health import readiness
from gateway_app.queries.base import Page, as_utc, connect, encode_cursor, newest_first

_A = AdminAction.__table__.c  # type: ignore[attr-defined]
_COLUMNS = ("id", "at", "actor", "role", "door", "action", "target", "outcome", "detail")


async def health(call: Call) -> Reply:
    code, body = readiness(
        call.runtime,
        call.llm,
        getattr(call.request.app.state, "counters", None),
        getattr(call.request.state, "bus", None),
    )
    return Reply({**body, "ready": code == 200})


def list_actions(
    engine: Engine,
    *,
    action: str | None,
    actor: str | None,
    limit: int,
    cursor: str | None,
) -> Page[dict[str, Any]]:
    stmt = select(*(_A[name] for name in _COLUMNS))
    if action is not None:
        stmt = stmt.where(_A.action == action)
    if actor is not None:
        stmt = stmt.where(_A.actor == actor)
    stmt = newest_first(stmt, _A.at, _A.id, limit, cursor)
    with connect(engine) as connection:
        rows = connection.execute(stmt).all()
    items = []
    for row in rows[:limit]:
        item = dict(zip(_COLUMNS, row, strict=True))
        item["at"] = as_utc(item["at"]).isoformat()
        items.append(item)
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return Page(items, encode_cursor(last.at, last.id) if last is not None else None, limit)


async def actions(call: Call) -> Reply:
    action, actor = text(call, "action"), text(call, "actor")
    limit, cursor, engine = limit_of(call), call.query("cursor"), call.runtime.engine
    page = await call.db(lambda: list_actions(engine, action=action, actor=actor, limit=limit, cursor=cursor))
    return Reply({"items": page.items, "next_cursor": page.next_cursor, "limit": page.limit})


OPERATIONS = (
    Operation(
        "GET",
        "/admin/health",
        health,
        "Upstream servers and row writers: what /readyz shows an operator",
        "status",
        responses={200: "The /readyz detail, and `ready` (whether /readyz answers 200)."},
    ),
    Operation(
        "GET",
        "/admin/actions",
        actions,
        "Changes made by administrators (API, dashboard), newest first, paged",
        "status",
        params=(
            filter_param("action", "Only this action (key.create, key.revoke, policy.reload...)."),
            filter_param("actor", "Only this admin token's id."),
            *PAGING_PARAMS,
        ),
        responses={200: "`{items, next_cursor, limit}`; each item says who, what, to what, how it ended."},
    ),
)
