"""Every report read through the daily rollups equals the rows' own answer (tests/reports/rollup_data:
a reference in plain Python), for random rows around midnights and periods that start and end
anywhere: on a midnight, inside a day, open, within one day."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from gateway_app.database import create_schema
from gateway_app.queries import Period, budget_status, limits, spend, team_tools, top_keys
from gateway_common.db import make_engine
from gateway_common.rollups import insert_rows
from llm_proxy.ledger import ModelRequest
from mcp_gateway.audit.models import ToolCall
from policies import load_policy_text
from policies.budgeting import BudgetScopes
from tests.reports import rollup_data as ref

POLICY = """
providers: [{name: anthropic, kind: anthropic, base_url: "http://127.0.0.1:9"}]
teams: [{name: alpha}, {name: beta}]
virtual_keys: [{id: k0, team: alpha}, {id: k1, team: beta}]
budgets:
  org: {monthly_limit_usd: 1000, weekly_limit_usd: 500, daily_limit_usd: 100}
  teams: [{name: alpha, daily_limit_usd: 50, monthly_limit_usd: 400}]
  keys: [{id: k0, weekly_limit_usd: 40}]
  providers: [{name: anthropic, daily_limit_usd: 60}]
"""


class Seeded:
    def __init__(self, engine: Engine, seed: int) -> None:
        rng = random.Random(seed)
        stamps: set[datetime] = set()
        self.engine = engine
        self.tools = ref.tool_rows(rng, 700, stamps)
        self.models = ref.model_rows(rng, 700, stamps)
        self.periods = ref.periods(rng)
        with engine.begin() as conn:  # in several statements, as the writers' batches come
            for start in range(0, 700, 150):
                insert_rows(conn, ToolCall.__table__, self.tools[start : start + 150])  # type: ignore[attr-defined]
                insert_rows(conn, ModelRequest.__table__, self.models[start : start + 150])  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Seeded]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    create_schema(engine)
    yield Seeded(engine, seed=8)
    engine.dispose()


def test_top_keys(seeded: Seeded) -> None:
    for period in seeded.periods:
        for order in ("model_calls", "tool_calls", "cost"):
            for team in (None, "alpha"):
                got = top_keys(seeded.engine, period, order=order, team=team, limit=None)
                rows = [(r.key_id, r.team, r.model_calls, r.cost_usd, r.tool_calls) for r in got.rows]
                assert rows == ref.top_keys(seeded.tools, seeded.models, period, order, team), (period, order)
                assert all(r.key_name == r.key_id.upper() for r in got.rows)
                three = top_keys(seeded.engine, period, order=order, team=team, limit=3)
                assert three.rows == got.rows[:3]


def test_team_tools(seeded: Seeded) -> None:
    filters: list[dict[str, Any]] = [{}, {"team": "beta"}, {"key_id": "k2"}, {"client_name": ""}]
    filters.append({"client_name": "claude-code", "team": "alpha"})
    for period in seeded.periods:
        for given in filters:
            got = team_tools(
                seeded.engine,
                period,
                team=given.get("team"),
                key=given.get("key_id"),
                client=given.get("client_name"),
            )
            rows = [(r.server, r.tool, r.calls, r.ok, r.refused, r.keys, r.last_used) for r in got.rows]
            assert rows == ref.team_tools(seeded.tools, period, **given), (period, given)


def test_spend_by_every_dimension_with_its_daily_bars(seeded: Seeded) -> None:
    for period in seeded.periods:
        for by in ("team", "key", "model", "provider"):
            for given in ({}, {"team": "alpha"}, {"key_id": "k4"}):
                got = spend(
                    seeded.engine, period, by=by, team=given.get("team"), key=given.get("key_id"), daily=True
                )
                rows, daily = ref.spend(seeded.models, period, by, **given)
                assert [
                    (
                        r.group,
                        r.requests,
                        r.input_tokens,
                        r.output_tokens,
                        r.cache_read_tokens,
                        r.cache_write_tokens,
                        r.cost_usd,
                    )
                    for r in got.rows
                ] == rows, (period, by, given)
                assert got.daily is not None
                assert [(d.day, d.group, d.requests, d.cost_usd) for d in got.daily] == daily
                assert got.total_usd == sum(row[-1] for row in rows)
                plain = spend(seeded.engine, period, by=by, team=given.get("team"), key=given.get("key_id"))
                assert (plain.rows, plain.daily) == (got.rows, None)


def test_limits(seeded: Seeded) -> None:
    for period in seeded.periods:
        for by in ("key", "team"):
            for given in ({}, {"team": "beta"}, {"key_id": "k1"}):
                got = limits(seeded.engine, period, by=by, team=given.get("team"), key=given.get("key_id"))
                rows = [
                    (r.key_id, r.team, r.surface, r.status, r.blocked_by, r.refusals, r.first, r.last)
                    for r in got.rows
                ]
                assert sorted(rows, key=repr) == sorted(
                    ref.limits(seeded.tools, seeded.models, period, by, **given), key=repr
                )
                order = [
                    (-r.refusals, r.key_id or "", r.team or "", r.surface, r.blocked_by or "")
                    for r in got.rows
                ]
                assert order == sorted(order)


def test_budgets(seeded: Seeded) -> None:
    scopes = BudgetScopes(load_policy_text(POLICY).policy)
    for now in (ref.START + timedelta(days=d, hours=h) for d in range(ref.DAYS + 1) for h in (0, 13)):
        got = budget_status(seeded.engine, scopes, now=now)
        assert [(r.budget, r.period, r.spent_usd) for r in got.rows] == ref.budget_spent(
            seeded.models, scopes, now
        )
    assert any(
        r.spent_usd > 0 for r in budget_status(seeded.engine, scopes, now=ref.START + timedelta(days=3)).rows
    )


def test_the_periods_cover_whole_days_partial_days_and_both() -> None:
    """The reference periods exercise every path: rollups only, rows only, both."""
    from gateway_app.queries.rollup_reads import split

    splits = [split(period) for period in ref.periods(random.Random(8))]
    assert any(s.days is not None and not s.edges for s in splits)
    assert any(s.days is None for s in splits)
    assert any(s.days is not None and len(s.edges) == 2 for s in splits)
    midnight = datetime(2026, 11, 2, tzinfo=UTC)
    assert split(Period(midnight, midnight + timedelta(days=1), "")).days == ("2026-11-02", "2026-11-03")
