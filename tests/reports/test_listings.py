"""Audit and ledger listings (`gateway_app.queries`) on SQLite and PostgreSQL: newest first, stable
keyset pages (ties in time included), every filter, and one record in full; and the budgets report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from gateway_app.database import create_schema
from gateway_app.queries import (
    MAX_PAGE_SIZE,
    InvalidCursor,
    ModelRequestFilter,
    Period,
    ToolCallFilter,
    budget_status,
    get_model_request,
    get_tool_call,
    list_model_requests,
    list_tool_calls,
    parse_period,
    spend,
    to_plain,
)
from gateway_common.db import make_engine
from mcp_gateway.audit.models import ToolCall
from policies import load_policy_text
from policies.budgeting import BudgetScopes
from policies.outcomes import Outcome
from tests.reports.seed import Seeded, seed

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
"""A Wednesday: this week began on Monday the 16th, this month on the 1st."""


@dataclass
class Database:
    engine: Engine
    seeded: Seeded


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    create_schema(engine)
    seeded = seed(engine, NOW)
    yield Database(engine, seeded)
    engine.dispose()


def newest_first(stamps: dict[str, datetime], ids: set[str] | None = None) -> list[str]:
    chosen = [(stamp, ident) for ident, stamp in stamps.items() if ids is None or ident in ids]
    return [ident for _, ident in sorted(chosen, reverse=True)]


def all_pages(fetch: object, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = fetch(limit, cursor)  # type: ignore[operator]
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            return [[getattr(item, "id", None) or item.request_id for item in p.items] for p in pages]


def test_tool_calls_page_newest_first_without_gaps_or_repeats(db: Database) -> None:
    # Five calls at one instant: the pages must cut through them by id and lose none.
    tie = NOW - timedelta(hours=30)
    with Session(db.engine) as session:
        for n in range(5):
            session.add(
                ToolCall(
                    id=f"tie{n}",
                    timestamp=tie,
                    key_id="vk_ci",
                    key_name="CI",
                    exposed_name="x",
                    status="ok",
                    latency_ms=1,
                )
            )
        session.commit()
    stamps = {**db.seeded.tool_calls, **{f"tie{n}": tie for n in range(5)}}
    pages = all_pages(lambda limit, cursor: list_tool_calls(db.engine, limit=limit, cursor=cursor), 3)
    assert [len(page) for page in pages] == [3, 3, 3, 3, 3, 3, 2]
    assert [ident for page in pages for ident in page] == newest_first(stamps)
    assert list_tool_calls(db.engine, limit=MAX_PAGE_SIZE).next_cursor is None


def test_model_requests_page_newest_first(db: Database) -> None:
    pages = all_pages(lambda limit, cursor: list_model_requests(db.engine, limit=limit, cursor=cursor), 4)
    assert [len(page) for page in pages] == [4, 4, 4, 4, 3]
    assert [ident for page in pages for ident in page] == newest_first(db.seeded.requests)


def test_a_page_holds_at_most_the_documented_rows(db: Database) -> None:
    with pytest.raises(ValueError, match=f"1 to {MAX_PAGE_SIZE}"):
        list_tool_calls(db.engine, limit=MAX_PAGE_SIZE + 1)
    with pytest.raises(ValueError, match=f"1 to {MAX_PAGE_SIZE}"):
        list_model_requests(db.engine, limit=0)
    with pytest.raises(InvalidCursor):
        list_tool_calls(db.engine, cursor="not-a-cursor")


def _recent(db: Database) -> Period:
    return Period(db.seeded.moments.recent_start, None, "recent")


@pytest.mark.parametrize(
    ("filters", "numbers"),
    [
        (ToolCallFilter(key="vk_bob"), [5, 6, 8, 9, 15]),
        (ToolCallFilter(team="backend"), [10, 11, 12]),
        (ToolCallFilter(server="filesystem"), [1, 2, 3, 4, 5, 6, 8, 9, 15]),
        (ToolCallFilter(tool="read_file"), [1, 2, 3, 5, 6, 15]),
        (ToolCallFilter(server="filesystem", tool="read_file", key="vk_alice"), [1, 2, 3]),
        (ToolCallFilter(client="cursor-vscode"), [8, 9]),
        (ToolCallFilter(statuses=(Outcome.DENIED,)), [4, 7]),
        (ToolCallFilter(statuses=(Outcome.RATE_LIMITED, Outcome.TIMEOUT)), [6, 12, 15]),
        (ToolCallFilter(statuses=(Outcome.BUDGET_EXCEEDED,)), []),
        (ToolCallFilter(period=parse_period(now=NOW, week="this")), list(range(1, 13))),
        (ToolCallFilter(period=parse_period(now=NOW, until="2026-10-01")), [13, 14, 15]),
        (ToolCallFilter(period=parse_period(now=NOW, since="30d"), key="vk_bob"), [5, 6, 8, 9]),
    ],
)
def test_each_tool_call_filter(db: Database, filters: ToolCallFilter, numbers: list[int]) -> None:
    page = list_tool_calls(db.engine, filters, limit=100)
    ids = {f"tc{n:04d}" for n in numbers}
    assert [call.id for call in page.items] == newest_first(db.seeded.tool_calls, ids)


@pytest.mark.parametrize(
    ("filters", "numbers"),
    [
        (ModelRequestFilter(key="vk_alice"), [1, 2, 3, 12, 13]),
        (ModelRequestFilter(team="backend"), [5, 6, 7, 8, 9, 10, 15, 17, 18, 19]),
        (ModelRequestFilter(model="fast"), [3]),  # the name asked for...
        (ModelRequestFilter(model="claude-haiku-4-5"), [3]),  # ...or the one served
        (ModelRequestFilter(model="claude-opus-4-1"), [14]),
        (ModelRequestFilter(provider="openai"), [15]),
        (ModelRequestFilter(statuses=(Outcome.RATE_LIMITED,)), [7, 19]),
        (ModelRequestFilter(statuses=(Outcome.BUDGET_EXCEEDED, Outcome.DENIED)), [8, 14]),
        (ModelRequestFilter(period=parse_period(now=NOW, month="last")), [12, 13, 14, 15, 16]),
        (ModelRequestFilter(team="frontend", period=parse_period(now=NOW, since="2026-11-16")), [1, 2, 3, 4]),
    ],
)
def test_each_model_request_filter(db: Database, filters: ModelRequestFilter, numbers: list[int]) -> None:
    page = list_model_requests(db.engine, filters, limit=100)
    ids = {f"mr{n:04d}" for n in numbers}
    assert [request.request_id for request in page.items] == newest_first(db.seeded.requests, ids)


def test_one_tool_call_in_full_and_one_model_request(db: Database) -> None:
    detail = get_tool_call(db.engine, "tc0004")
    assert detail is not None
    assert detail.arguments == {"path": "src/4.ts"}
    assert detail.result == {"content": [{"type": "text", "text": "result 4"}], "isError": False}
    assert detail.call.status == "denied" and detail.call.error == "Unknown tool: 'filesystem__write_file'"
    assert detail.call.timestamp == db.seeded.tool_calls["tc0004"]
    assert to_plain(detail)["call"]["timestamp"] == db.seeded.tool_calls["tc0004"].isoformat()
    request = get_model_request(db.engine, "mr0003")
    assert request is not None
    assert (request.requested_model, request.served_model, request.provider) == (
        "fast",
        "claude-haiku-4-5",
        "backup",
    )
    assert get_tool_call(db.engine, "mr0003") is None and get_model_request(db.engine, "tc0004") is None


def test_daily_spend_adds_up_to_the_period(db: Database) -> None:
    period = parse_period(now=NOW, month="this")
    report = spend(db.engine, period, by="model", daily=True)
    assert report.daily is not None
    by_model: dict[str | None, float] = {}
    for row in report.daily:
        by_model[row.group] = by_model.get(row.group, 0.0) + row.cost_usd
        assert period.contains(datetime.fromisoformat(row.day).replace(tzinfo=UTC))
    assert by_model == {row.group: row.cost_usd for row in report.rows}
    assert {row.group for row in report.rows} == {
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
    }
    days = {row.day for row in report.daily}
    expected_days = {
        stamp.strftime("%Y-%m-%d") for ident, stamp in db.seeded.requests.items() if period.contains(stamp)
    }
    assert days == expected_days


BUDGETS = """
providers: [{name: anthropic, kind: anthropic, base_url: "http://127.0.0.1:9"}]
teams: [{name: frontend}, {name: backend}]
virtual_keys: [{id: vk_alice, team: frontend}]
budgets:
  org: {monthly_limit_usd: 100}
  teams:
    - {name: backend, monthly_limit_usd: 3, weekly_limit_usd: 10, alert_threshold: 0.5}
  keys:
    - {id: vk_alice, daily_limit_usd: 1}
  providers:
    - {name: anthropic, monthly_limit_usd: 0}
"""


def test_budgets_report_spend_limit_percent_reset_and_alerts(db: Database) -> None:
    scopes = BudgetScopes(load_policy_text(BUDGETS).policy)
    report = budget_status(db.engine, scopes, now=NOW)
    rows = {(row.budget, row.period): row for row in report.rows}
    assert list(rows) == [
        ("org", "monthly"),
        ("team:backend", "weekly"),
        ("team:backend", "monthly"),
        ("key:vk_alice", "daily"),
        ("provider:anthropic", "monthly"),
    ]
    costs, stamps = db.seeded.costs, db.seeded.requests
    recent = [f"mr{n:04d}" for n in range(1, 12)]  # this week and this month; last month's are not counted
    assert rows["org", "monthly"].spent_usd == sum(costs[i] for i in recent) == 3.6875
    backend = rows["team:backend", "monthly"]
    assert backend.spent_usd == 2.5 and backend.limit_usd == 3 and backend.percent == 83.33
    assert backend.label == "2026-11" and backend.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert [(a.kind, a.threshold) for a in backend.alerts] == [("threshold", 0.5)]  # not last month's
    weekly = rows["team:backend", "weekly"]
    assert (weekly.spent_usd, weekly.label, weekly.starts_at) == (
        2.5,
        "2026-W47",
        datetime(2026, 11, 16, tzinfo=UTC),
    )
    assert weekly.alerts == []
    today = datetime(2026, 11, 18, tzinfo=UTC)
    alice_today = sum(costs[i] for i in ("mr0001", "mr0002", "mr0003") if stamps[i] >= today)
    assert rows["key:vk_alice", "daily"].spent_usd == alice_today
    assert rows["key:vk_alice", "daily"].resets_at == datetime(2026, 11, 19, tzinfo=UTC)
    anthropic = rows["provider:anthropic", "monthly"]
    assert anthropic.spent_usd == 3.6875 - 0.125  # the backup provider's request is not anthropic's
    assert anthropic.percent is None  # a zero limit: no percentage
    assert budget_status(db.engine, BudgetScopes(load_policy_text("{}").policy), now=NOW).rows == []
