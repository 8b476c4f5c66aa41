"""Retention: `mcp-gateway audit prune` and the daily prune delete exactly the rows older than the policy
keeps, in batches, leave tables without a setting alone, and never go below the ledger's 32 days."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select, text
from sqlmodel import Session

from gateway_app.cli import main
from gateway_app.database import create_schema
from gateway_app.retention import TABLES, RetentionTask, parse_age
from gateway_common.db import make_engine
from llm_proxy.ledger import BudgetAlertRecord, ModelRequest
from mcp_gateway.audit import ToolCall
from policies import GatewayPolicy, load_policy_text

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
AGES = {"tool_calls": (100, 40, 10, 1), "model_requests": (100, 40, 5), "budget_alerts": (100, 5)}
"""Days old of the rows each test starts with."""
AGES_LIST = {name: list(ages) for name, ages in AGES.items()}


def tool_call(age: float) -> ToolCall:
    return ToolCall(
        id=uuid.uuid4().hex,
        timestamp=NOW - timedelta(days=age),
        key_id="k",
        key_name="k",
        exposed_name="a__b",
        status="ok",
        latency_ms=1.0,
    )


def model_request(age: float) -> ModelRequest:
    return ModelRequest(
        request_id=uuid.uuid4().hex,
        timestamp=NOW - timedelta(days=age),
        endpoint="messages",
        key_id="k",
        key_name="k",
        status="ok",
    )


def alert(age: float) -> BudgetAlertRecord:
    stamp = NOW - timedelta(days=age)
    return BudgetAlertRecord(
        id=uuid.uuid4().hex,
        timestamp=stamp,
        kind="threshold",
        budget="org",
        period="monthly",
        period_label="2026-11",
        threshold=0.8,
        spent_usd=8.0,
        limit_usd=10.0,
        resets_at=stamp,
        message="m",
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    create_schema(engine)
    makers = {"tool_calls": tool_call, "model_requests": model_request, "budget_alerts": alert}
    with Session(engine) as db:
        for name, ages in AGES.items():
            db.add_all(makers[name](age) for age in ages)
        db.commit()
    yield engine
    engine.dispose()


def ages(engine: Engine) -> dict[str, list[int]]:
    """Days old of the rows left, per table."""
    found = {}
    with engine.connect() as conn:
        for name, retained in TABLES.items():
            stamps = conn.execute(select(retained.stamp)).scalars().all()
            found[name] = sorted(
                (round((NOW - s.replace(tzinfo=UTC)).total_seconds() / 86400) for s in stamps), reverse=True
            )
    return found


def policy(**sections: Any) -> GatewayPolicy:
    return load_policy_text(yaml.safe_dump(sections)).policy


def config_file(tmp_path: Path, **sections: Any) -> str:
    path = tmp_path / "gateway.yaml"
    sections.setdefault("gateway", {})["database_url"] = f"sqlite:///{tmp_path / 'gateway.db'}"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads the wall clock: pin it to NOW."""
    import time

    monkeypatch.setattr(time, "time", NOW.timestamp)


@pytest.mark.usefixtures("frozen_now")
def test_prune_follows_the_policy_and_a_dry_run_changes_nothing(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(
        tmp_path, gateway={"audit": {"retention_days": 30}}, llm_proxy={"ledger_retention_days": 60}
    )
    assert main(["audit", "prune", "--config", config, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "tool_calls: would delete 2 rows older than 2026-10-28T12:00:00Z (gateway.audit.retention_days: 30)"
        in out
    )
    assert "model_requests: would delete 1 rows older than 2026-09-28T12:00:00Z" in out
    assert "budget_alerts: kept forever (llm_proxy.alert_retention_days is not set)" in out
    assert ages(engine) == AGES_LIST

    assert main(["audit", "--config", config, "prune"]) == 0  # --config before the sub-command works too
    assert "tool_calls: deleted 2 rows" in capsys.readouterr().out
    assert ages(engine) == {"tool_calls": [10, 1], "model_requests": [40, 5], "budget_alerts": [100, 5]}


@pytest.mark.usefixtures("frozen_now")
def test_older_than_never_takes_the_ledger_below_32_days(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    assert main(["audit", "prune", "--database-url", url, "--older-than", "7d"]) == 0
    out = capsys.readouterr().out
    assert "model_requests: left alone: model_requests keeps at least 32 days" in out
    assert ages(engine) == {**AGES_LIST, "tool_calls": [1]}
    assert (
        main(["audit", "prune", "--database-url", url, "--older-than", "7d", "--table", "budget_alerts"]) == 2
    )
    assert "refused: budget_alerts keeps at least 32 days" in capsys.readouterr().err
    assert main(["audit", "prune", "--database-url", url, "--older-than", "6w"]) == 0
    assert ages(engine) == {"tool_calls": [1], "model_requests": [40, 5], "budget_alerts": [5]}


def test_prune_without_any_retention_says_so(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "prune", "--config", config_file(tmp_path)]) == 2
    assert "nothing to prune" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "prune", "--config", config_file(tmp_path), "--older-than", "soon"])
    assert exit_.value.code == 2
    assert ages(engine) == AGES_LIST


def test_prune_never_creates_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "prune", "--database-url", f"sqlite:///{missing}", "--older-than", "90d"])
    assert exit_.value.code == 1 and "no gateway database" in capsys.readouterr().err
    assert not missing.exists()


def test_ages() -> None:
    assert parse_age("90d") == timedelta(days=90)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("2w") == timedelta(days=14)
    assert parse_age("30") == timedelta(days=30)
    with pytest.raises(ValueError, match="not an age"):
        parse_age("-1d")


class FakeSleep:
    """Records each sleep; a sleep of the prune interval moves the clock on; stops after ``intervals``."""

    def __init__(self, clock: list[float], interval: float, intervals: int) -> None:
        self.clock, self.interval, self.intervals = clock, interval, intervals
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if seconds == self.interval:
            if len([c for c in self.calls if c == self.interval]) > self.intervals:
                raise asyncio.CancelledError
            self.clock[0] += seconds


@pytest.mark.anyio
async def test_the_daily_prune_deletes_in_batches_on_the_injected_clock(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [NOW.timestamp()]
    sleep = FakeSleep(clock, 86_400.0, intervals=1)
    task = RetentionTask(
        engine,
        lambda: policy(gateway={"audit": {"retention_days": 9}}, llm_proxy={"alert_retention_days": 40}),
        lambda: clock[0],
        first_delay=60.0,
        pause=0.5,
        limit=2,
        sleep=sleep,
    )
    with caplog.at_level(logging.INFO, logger="mcp_gateway.retention"), pytest.raises(asyncio.CancelledError):
        await task.run()
    # First pass: the tool calls 100, 40 and 10 days old go, in two batches of at most 2 with a pause
    # between them, and the 100-day-old alert. Second pass, a day later on the injected clock: nothing
    # more is old enough (the 1-day-old call is 2 days old now).
    assert task.runs == 2
    assert sleep.calls == [60.0, 0.5, 86_400.0, 86_400.0]
    assert ages(engine) == {"tool_calls": [1], "model_requests": [100, 40, 5], "budget_alerts": [5]}
    assert task.deleted == {"tool_calls": 3, "budget_alerts": 1}
    assert (
        "retention: deleted 3 tool_calls rows older than 2026-11-18T12:00:00Z (gateway.audit.retention_days)"
        in caplog.text
    )


@pytest.mark.anyio
async def test_the_clock_decides_what_is_old(engine: Engine) -> None:
    clock = [NOW.timestamp()]
    task = RetentionTask(engine, lambda: policy(gateway={"audit": {"retention_days": 2}}), lambda: clock[0])
    assert await task.prune_once() == {"tool_calls": 3}
    assert await task.prune_once() == {"tool_calls": 0}
    clock[0] += 86_400.0 + 1.0  # the 1-day-old call is now older than 2 days
    assert await task.prune_once() == {"tool_calls": 1}
    assert ages(engine)["tool_calls"] == []


@pytest.mark.anyio
async def test_a_failing_prune_is_logged_and_the_task_goes_on(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE tool_calls RENAME TO tool_calls_away"))
    task = RetentionTask(
        engine,
        lambda: policy(gateway={"audit": {"retention_days": 9}}, llm_proxy={"alert_retention_days": 40}),
        lambda: NOW.timestamp(),
    )
    with caplog.at_level(logging.WARNING, logger="mcp_gateway.retention"):
        assert await task.prune_once() == {"tool_calls": 0, "budget_alerts": 1}
    assert "retention: could not prune tool_calls" in caplog.text
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(TABLES["budget_alerts"].table)).scalar_one() == 1
