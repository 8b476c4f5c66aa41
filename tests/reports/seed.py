"""A small gateway database whose answers are known: tool calls, model requests and budget alerts
across teams, keys, tools, models, providers, outcomes and dates, placed relative to an injected
``now`` so that every answer below holds whatever day ``now`` is.

Three kinds of moment:

- recent: inside this ISO week, this calendar month and the last 30 days, all at once (between the
  later of the week's and the month's start, and ``now``);
- last month: the 2nd to 4th day of the previous calendar month: never this week, maybe within the
  last 30 days, so only model requests that are not refusals are placed there;
- old: days before the previous month began (always more than 30 days ago): in no answer.

The answers to the four questions (README, "Answers for the people who govern") are the constants
at the end; the tests assert them through the queries, the CLI and the README's snippets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from gateway_common.rollups import insert_rows
from llm_proxy.ledger import BudgetAlertRecord, ModelRequest
from mcp_gateway.audit.models import ToolCall
from policies.budgeting import period_bounds, period_label

KEYS = {
    "vk_alice": "frontend",
    "vk_bob": "frontend",
    "vk_carol": "backend",
    "vk_dave": "backend",
    "vk_ci": None,
}
NAMES = {"vk_alice": "Alice", "vk_bob": "Bob", "vk_carol": "Carol", "vk_dave": "Dave", "vk_ci": "CI"}


@dataclass
class Moments:
    now: datetime
    recent_start: datetime
    last_month_start: datetime
    month_start: datetime
    week_start: datetime
    _counter: Any = field(default_factory=itertools.count)

    @classmethod
    def at(cls, now: datetime) -> Moments:
        week_start, _ = period_bounds("weekly", now.timestamp())
        month_start, _ = period_bounds("monthly", now.timestamp())
        last_month_start, _ = period_bounds("monthly", (month_start - timedelta(days=1)).timestamp())
        return cls(now, max(week_start, month_start), last_month_start, month_start, week_start)

    def recent(self) -> datetime:
        """A distinct moment in the recent window, each later than the one before."""
        n: int = next(self._counter)
        span = self.now - self.recent_start
        moment: datetime = self.recent_start + span * (0.05 + 0.9 * (n % 97) / 97)
        return moment + timedelta(microseconds=n % 97)

    def last_month(self, day: int) -> datetime:
        return self.last_month_start + timedelta(days=day, hours=next(self._counter) % 12)

    def old(self, days: int) -> datetime:
        return self.last_month_start - timedelta(days=days, hours=next(self._counter) % 12)


@dataclass
class Seeded:
    moments: Moments
    tool_calls: dict[str, datetime]
    """Every tool call's id and time, as written."""
    requests: dict[str, datetime]
    """Every model request's id and time, and its cost below."""
    costs: dict[str, float]


def _call(
    n: int, at: datetime, key: str, server: str | None, tool: str | None, status: str, **extra: Any
) -> ToolCall:
    values: dict[str, Any] = {
        "id": f"tc{n:04d}",
        "timestamp": at,
        "key_id": key,
        "key_name": NAMES[key],
        "team": KEYS[key],
        "client_name": "claude-code",
        "client_version": "2.1.332",
        "exposed_name": f"{server}__{tool}" if server else "nosuch__tool",
        "server": server,
        "tool": tool,
        "arguments": {"path": f"src/{n}.ts"},
        "result": {"content": [{"type": "text", "text": f"result {n}"}], "isError": False},
        "status": status,
        "latency_ms": 1.5,
    }
    values.update(extra)
    return ToolCall(**values)


def _request(n: int, at: datetime, key: str, cost: float, status: str = "ok", **extra: Any) -> ModelRequest:
    answered = status == "ok"
    values: dict[str, Any] = {
        "request_id": f"mr{n:04d}",
        "timestamp": at,
        "endpoint": "messages",
        "key_id": key,
        "key_name": NAMES[key],
        "team": KEYS[key],
        "provider": "anthropic" if answered else None,
        "requested_model": "claude-sonnet-4-5",
        "served_model": "claude-sonnet-4-5-20250929" if answered else None,
        "input_tokens": 1000 if answered else 0,
        "output_tokens": 100 if answered else 0,
        "cost_usd": cost,
        "status": status,
        "http_status": 200 if answered else 429,
    }
    values.update(extra)
    return ModelRequest(**values)


def seed(engine: Engine, now: datetime) -> Seeded:
    """Write the rows (into a database at this release's schema)."""
    at = Moments.at(now.astimezone(UTC))
    r = at.recent
    limited = "rate_limit:key:vk_bob:tool_calls_per_minute"
    calls = [
        # Recent, from Claude Code: what the frontend team uses.
        *(_call(n, r(), "vk_alice", "filesystem", "read_file", "ok") for n in range(1, 4)),
        _call(
            4,
            r(),
            "vk_alice",
            "filesystem",
            "write_file",
            "denied",
            error="Unknown tool: 'filesystem__write_file'",
        ),
        _call(5, r(), "vk_bob", "filesystem", "read_file", "ok"),
        _call(
            6,
            r(),
            "vk_bob",
            "filesystem",
            "read_file",
            "rate_limited",
            blocked_by=limited,
            error="rate limited",
        ),
        _call(7, r(), "vk_alice", None, None, "denied", error="Unknown tool: 'nosuch__tool'"),
        # Recent, not from Claude Code, or not the frontend team.
        *(
            _call(n, r(), "vk_bob", "filesystem", "list_directory", "ok", client_name="cursor-vscode")
            for n in (8, 9)
        ),
        _call(10, r(), "vk_carol", "database", "query", "ok"),
        _call(11, r(), "vk_carol", "database", "query", "tool_error", error="syntax error"),
        _call(12, r(), "vk_dave", "deployment", "deploy_staging", "timeout", error="no answer in 120 s"),
        # Old: in no answer.
        *(_call(n, at.old(6), "vk_alice", "deployment", "deploy_staging", "ok") for n in (13, 14)),
        _call(15, at.old(8), "vk_bob", "filesystem", "read_file", "rate_limited", blocked_by=limited),
    ]
    requests = [
        # Recent: model calls this week.
        _request(1, r(), "vk_alice", 0.25),
        _request(2, r(), "vk_alice", 0.5),
        _request(
            3,
            r(),
            "vk_alice",
            0.125,
            provider="backup",
            served_model="claude-haiku-4-5",
            requested_model="fast",
        ),
        _request(4, r(), "vk_bob", 0.25),
        _request(5, r(), "vk_carol", 1.0),
        _request(6, r(), "vk_carol", 0.5),
        _request(
            7, r(), "vk_carol", 0.0, "rate_limited", blocked_by="rate_limit:key:vk_carol:requests_per_minute"
        ),
        _request(
            8,
            r(),
            "vk_carol",
            0.0,
            "budget_exceeded",
            blocked_by="budget:team:backend:monthly",
            http_status=402,
        ),
        _request(9, r(), "vk_dave", 0.75),
        _request(10, r(), "vk_dave", 0.25),
        _request(11, r(), "vk_ci", 0.0625),
        # Last month: what code generation cost per team.
        _request(12, at.last_month(1), "vk_alice", 1.0),
        _request(13, at.last_month(2), "vk_alice", 0.5),
        _request(
            14, at.last_month(2), "vk_bob", 0.0, "denied", http_status=403, requested_model="claude-opus-4-1"
        ),
        _request(
            15,
            at.last_month(3),
            "vk_carol",
            2.0,
            provider="openai",
            served_model="gpt-4o",
            requested_model="gpt-4o",
        ),
        _request(16, at.last_month(1), "vk_ci", 0.25),
        # Old.
        *(_request(n, at.old(10), "vk_dave", 4.0) for n in (17, 18)),
        _request(
            19,
            at.old(12),
            "vk_dave",
            0.0,
            "rate_limited",
            blocked_by="rate_limit:team:backend:tokens_per_minute",
        ),
    ]
    month_label = period_label("monthly", at.month_start)
    alerts = [
        BudgetAlertRecord(
            id="al1",
            timestamp=at.recent(),
            kind="threshold",
            budget="team:backend",
            period="monthly",
            period_label=month_label,
            threshold=0.5,
            spent_usd=1.5,
            limit_usd=3.0,
            resets_at=period_bounds("monthly", now.timestamp())[1],
            message="budget team:backend monthly reached its 50% alert threshold",
        ),
        BudgetAlertRecord(
            id="al0",
            timestamp=at.old(3),
            kind="exhausted",
            budget="team:backend",
            period="monthly",
            period_label=period_label("monthly", at.old(3)),
            threshold=1.0,
            spent_usd=3.0,
            limit_usd=3.0,
            resets_at=at.last_month_start,
            message="an earlier month's alert",
        ),
    ]
    seeded = Seeded(
        at,
        {c.id: c.timestamp for c in calls},
        {q.request_id: q.timestamp for q in requests},
        {q.request_id: q.cost_usd for q in requests},
    )
    with engine.begin() as conn:  # as the writers insert them: with their rollups
        insert_rows(conn, ToolCall.__table__, [call.model_dump() for call in calls])  # type: ignore[attr-defined]
        insert_rows(conn, ModelRequest.__table__, [request.model_dump() for request in requests])  # type: ignore[attr-defined]
    with Session(engine) as db:
        db.add_all(alerts)
        db.commit()
    return seeded


# -- the answers ------------------------------------------------------------------------------------

MODEL_CALLS_THIS_WEEK = {"vk_carol": 4, "vk_alice": 3, "vk_dave": 2, "vk_bob": 1, "vk_ci": 1}
"""Which developer made the most model calls this week (every request, refused ones too)."""

FRONTEND_TOOLS_IN_CLAUDE_CODE = {
    ("filesystem", "read_file"): {"calls": 5, "ok": 4, "refused": 1, "keys": 2},
    ("filesystem", "write_file"): {"calls": 1, "ok": 0, "refused": 1, "keys": 1},
}
"""Which tools the frontend team uses in Claude Code (the last 30 days)."""

SPEND_PER_TEAM_LAST_MONTH = {"backend": (2.0, 1), "frontend": (1.5, 3), None: (0.25, 1)}
"""What code generation (model requests) cost per team last month: (USD, requests)."""

LIMIT_HITS = {
    ("vk_bob", "tools", "rate_limited", "rate_limit:key:vk_bob:tool_calls_per_minute"): 1,
    ("vk_carol", "models", "rate_limited", "rate_limit:key:vk_carol:requests_per_minute"): 1,
    ("vk_carol", "models", "budget_exceeded", "budget:team:backend:monthly"): 1,
}
"""Who hits rate limits or budgets, and how often (the last 30 days)."""
