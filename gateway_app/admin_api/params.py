"""Query parameters the audit and report operations share: the period (the CLI's ``--since``,
``--until``, ``--month``, ``--week``, ``--now``), paging, outcomes; and their OpenAPI entries."""

from __future__ import annotations

from datetime import datetime

from gateway_app.admin_api.errors import BadRequest
from gateway_app.admin_api.operation import Call, Param
from gateway_app.queries import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Period, parse_moment, parse_period
from policies.bounds import clip
from policies.outcomes import OUTCOMES, Outcome, parse_outcome

_TEXT = {"type": "string", "maxLength": 256}


def now_of(call: Call) -> datetime:
    """``now`` (to reproduce a report later, as the CLI's ``--now``), else the gateway's clock."""
    given = call.query("now")
    return parse_moment(given, call.now(), flag="now") if given else call.now()


def period_of(call: Call, default: str | None) -> Period:
    """The period the parameters name; ``month`` or ``week`` given empty (``?week``) means this one."""
    month, week = call.query("month"), call.query("week")
    return parse_period(
        now=now_of(call),
        since=call.query("since"),
        until=call.query("until"),
        month="this" if month == "" else month,
        week="this" if week == "" else week,
        default=default,
    )


def statuses_of(call: Call) -> tuple[Outcome, ...]:
    found = []
    for text in call.query_all("status"):
        try:
            found.append(parse_outcome(text))
        except ValueError as exc:
            raise BadRequest(f"status: {exc}") from None
    return tuple(found)


def text(call: Call, name: str) -> str | None:
    value = call.query(name)
    if value is not None and len(value) > 256:
        raise BadRequest(f"{name} is longer than 256 characters: {clip(value, 64)!r}")
    return value or None


def limit_of(call: Call) -> int:
    return call.integer("limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)


def period_params(default: str | None) -> tuple[Param, ...]:
    shown = f"the last {default}" if default else "all time"
    return (
        Param("since", _TEXT, f"From: 15m, 2h, 7d, 2w ago, or an ISO timestamp (default: {shown})."),
        Param("until", _TEXT, "Up to (not including) this moment; as since."),
        Param("month", _TEXT, "A calendar month in UTC: YYYY-MM, this or last (empty: this)."),
        Param("week", _TEXT, "An ISO week in UTC: YYYY-Www, this or last (empty: this)."),
        Param("now", _TEXT, "Take this ISO timestamp as now (to reproduce a report)."),
    )


def filter_param(name: str, description: str) -> Param:
    return Param(name, _TEXT, description)


STATUS_PARAM = Param(
    "status",
    {"type": "array", "items": {"type": "string", "enum": list(OUTCOMES)}},
    "Only these outcomes (repeat the parameter, or separate them with commas).",
)
PAGING_PARAMS = (
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
        "Rows per page.",
    ),
    Param("cursor", {"type": "string"}, "The next page: the next_cursor of the previous page."),
)
