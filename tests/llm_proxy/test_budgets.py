"""Budgets: calendar periods, reserve/settle, alerts once, UTC resets, concurrency, restarts, webhooks."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from policies import Principal, load_policy_text
from policies.budgeting import (
    BudgetBlock,
    BudgetBook,
    BudgetScopes,
    Reservation,
    SpendRow,
    period_bounds,
    period_label,
)
from policies.memory_counters import MemoryCounterStore
from tests.llm_proxy.conftest import (
    KEY_ALICE,
    KEY_BOB,
    KEY_CAROL,
    FakeClock,
    mock_api,
    proxy_config,
    serve,
    start_proxy,
)

pytestmark = pytest.mark.anyio
ALICE = Principal("alice", "alice", "eng", "file")
BOB = Principal("bob", "bob", "eng", "file")
PRICING = {"models": {"claude-*": {"input_per_mtok": 1000, "output_per_mtok": 1000}}}
"""$0.001 per token: a mock request costs a few cents, exactly predictable."""


def test_calendar_periods_are_utc_aligned() -> None:
    friday = datetime(2026, 11, 27, 15, 30, tzinfo=UTC).timestamp()
    assert period_bounds("daily", friday) == (
        datetime(2026, 11, 27, tzinfo=UTC),
        datetime(2026, 11, 28, tzinfo=UTC),
    )
    assert period_bounds("weekly", friday) == (
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert period_bounds("monthly", friday) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    december = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    assert period_bounds("monthly", december)[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_label("weekly", datetime(2026, 11, 23, tzinfo=UTC)) == "2026-W48"
    assert period_label("monthly", datetime(2026, 11, 1, tzinfo=UTC)) == "2026-11"


BOOK_POLICY = """
budgets:
  org_level: {monthly_limit_usd: 100}
  teams:
    - name: eng
      monthly_limit_usd: 10
      alert_threshold: 0.8
  virtual_key_overrides:
    - id: alice
      daily_limit_usd: 1
"""


SCOPES = BudgetScopes(load_policy_text(BOOK_POLICY).policy)


def book(clock: FakeClock) -> BudgetBook:
    return BudgetBook(MemoryCounterStore(), clock)


async def spend(budgets: BudgetBook, principal: Principal, amount: float, lease: str) -> Reservation:
    reserved = await budgets.reserve(SCOPES.caller_scopes(principal), amount, lease)
    assert isinstance(reserved, Reservation), reserved
    await budgets.settle(reserved, amount)
    return reserved


async def test_every_applicable_budget_is_charged_and_checked() -> None:
    clock = FakeClock()
    budgets = book(clock)
    assert [s.ident for s in SCOPES.caller_scopes(ALICE)] == ["org", "team:eng", "key:alice"]
    assert [s.ident for s in SCOPES.caller_scopes(BOB)] == ["org", "team:eng"]
    await spend(budgets, ALICE, 0.6, "r1")
    status = {(s["budget"], s["period"]): s["spent_usd"] for s in await budgets.status(SCOPES)}
    assert status == {("org", "monthly"): 0.6, ("team:eng", "monthly"): 0.6, ("key:alice", "daily"): 0.6}
    await spend(budgets, ALICE, 0.5, "r2")  # admitted at 0.6 < 1.0: may pass the limit by this one request
    refused = await budgets.reserve(SCOPES.caller_scopes(ALICE), 0.01, "r3")
    assert isinstance(refused, BudgetBlock) and not refused.committed
    assert refused.blocked_by == "budget:key:alice:daily"
    assert "key:alice daily (2026-11-27) is spent: $1.1000 of a $1.00 limit" in refused.message
    assert "resets at 2026-11-28T00:00:00Z" in refused.message
    assert isinstance(await budgets.reserve(SCOPES.caller_scopes(BOB), 0.01, "r4"), Reservation)


async def test_reservations_in_flight_hold_the_rest_of_a_budget() -> None:
    clock = FakeClock()
    budgets = book(clock)
    await spend(budgets, ALICE, 0.7, "r1")
    first = await budgets.reserve(SCOPES.caller_scopes(ALICE), 0.5, "r2")
    assert isinstance(first, Reservation)
    second = await budgets.reserve(SCOPES.caller_scopes(ALICE), 0.01, "r3")
    assert isinstance(second, BudgetBlock) and second.committed and second.retry_after == 2
    assert "fully committed" in second.message
    await budgets.settle(first, 0.1)  # the real cost was far below the estimate
    assert isinstance(await budgets.reserve(SCOPES.caller_scopes(ALICE), 0.01, "r4"), Reservation)


async def test_alert_fires_once_per_budget_and_period() -> None:
    clock = FakeClock()
    budgets = book(clock)
    fired: list[Any] = []
    for i in range(12):  # bob: team eng only ($10 a month, alert at 80 %)
        reserved = await budgets.reserve(SCOPES.caller_scopes(BOB), 1.0, f"r{i}")
        if isinstance(reserved, BudgetBlock):
            break
        fired.extend(await budgets.settle(reserved, 1.0))
    assert [(a.kind, a.counter.budget, a.spent) for a in fired] == [
        ("threshold", "team:eng monthly", 8.0),
        ("exhausted", "team:eng monthly", 10.0),
    ]
    assert "reached its 80% alert threshold: $8.0000 of $10.00" in fired[0].message


async def test_daily_budget_resets_at_the_utc_day_boundary() -> None:
    clock = FakeClock(datetime(2026, 11, 27, 23, 59, 58, tzinfo=UTC))
    budgets = book(clock)
    await spend(budgets, ALICE, 1.0, "r1")
    refused = await budgets.reserve(SCOPES.caller_scopes(ALICE), 0.1, "r2")
    assert isinstance(refused, BudgetBlock) and refused.counter.period == "daily"
    assert refused.retry_after == pytest.approx(2)
    clock.advance(1.5)  # 23:59:59.5: still the same day
    assert isinstance(await budgets.reserve(SCOPES.caller_scopes(ALICE), 0.1, "r3"), BudgetBlock)
    clock.advance(0.5)  # midnight UTC
    reserved = await budgets.reserve(SCOPES.caller_scopes(ALICE), 0.1, "r4")
    assert isinstance(reserved, Reservation)
    await budgets.settle(reserved, 0.1)
    status = {(s["budget"], s["label"]): s["spent_usd"] for s in await budgets.status(SCOPES)}
    assert status[("key:alice", "2026-11-28")] == pytest.approx(0.1)
    assert status[("team:eng", "2026-11")] == pytest.approx(1.1)  # the month keeps counting


async def test_restore_rebuilds_counters_without_double_counting() -> None:
    clock = FakeClock()
    budgets = book(clock)
    rows = [SpendRow("alice", "eng", "primary", 0.4), SpendRow("bob", "eng", "primary", 2.0)]
    assert await budgets.restore("monthly", rows, SCOPES) == 2  # org and team:eng
    assert await budgets.restore("daily", rows[:1], SCOPES) == 1  # key:alice
    status = {s["budget"]: s["spent_usd"] for s in await budgets.status(SCOPES)}
    assert status == {"org": 2.4, "team:eng": 2.4, "key:alice": 0.4}
    await budgets.restore("monthly", rows, SCOPES)  # seeding never overwrites a counter the store has
    assert {s["budget"]: s["spent_usd"] for s in await budgets.status(SCOPES)}["org"] == 2.4


# -- through the proxy --------------------------------------------------------------------------


def budget_config(url: str, budgets: dict[str, Any]) -> dict[str, Any]:
    return proxy_config(url, pricing=PRICING, budgets=budgets)


@pytest.mark.usefixtures("provider_env")
async def test_team_budget_blocks_every_key_of_the_team(tmp_path: Path) -> None:
    async with mock_api() as (api, url):
        config = budget_config(url, {"teams": [{"name": "eng", "monthly_limit_usd": 0.05}]})
        async with start_proxy(config, tmp_path, clock=FakeClock()) as proxy:
            assert (await proxy.messages(key=KEY_ALICE)).status_code == 200
            assert (await proxy.messages(key=KEY_ALICE)).status_code == 200  # admitted below the limit
            for key in (KEY_ALICE, KEY_BOB):
                refused = await proxy.messages(key=key)
                assert refused.status_code == 402, refused.text
                error = refused.json()["error"]
                assert error["type"] == "billing_error"
                assert "Budget team:eng monthly (2026-11) is spent" in error["message"]
                assert "of a $0.05 limit; it resets at 2026-12-01T00:00:00Z" in error["message"]
            assert (await proxy.messages(key=KEY_CAROL)).status_code == 200  # team ops is not affected
            assert len(api.received) == 3
            rows = await proxy.ledger()
            blocked = [(r.key_id, r.blocked_by, r.http_status) for r in rows if r.status == "budget_exceeded"]
            assert blocked == [
                ("alice", "budget:team:eng:monthly", 402),
                ("bob", "budget:team:eng:monthly", 402),
            ]


@pytest.mark.usefixtures("provider_env")
async def test_alert_fires_once_with_row_log_and_webhook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[dict[str, Any]] = []

    async def webhook(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append(orjson.loads(body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.WARNING, logger="llm_proxy")
    async with serve(webhook) as hook_url, mock_api() as (_api, url):
        budgets = {
            "teams": [{"name": "eng", "monthly_limit_usd": 1.0, "alert_threshold": 0.1}],
            "alert_webhook": f"{hook_url}/hooks/T0KEN",
        }
        async with start_proxy(budget_config(url, budgets), tmp_path, clock=FakeClock()) as proxy:
            for _ in range(5):  # ~$0.04 each: the 3rd crosses $0.10
                assert (await proxy.messages()).status_code == 200
            for _ in range(200):
                if received:
                    break
                await asyncio.sleep(0.01)
            [alert] = await proxy.alerts()
            assert (alert.kind, alert.budget, alert.period, alert.period_label) == (
                "threshold",
                "team:eng",
                "monthly",
                "2026-11",
            )
            assert alert.threshold == 0.1 and 0.1 <= alert.spent_usd < 0.2 and alert.limit_usd == 1.0
    assert len(received) == 1
    payload = received[0]
    assert (
        payload["type"] == "budget_alert"
        and payload["kind"] == "threshold"
        and payload["budget"] == "team:eng"
    )
    assert payload["resets_at"] == "2026-12-01T00:00:00+00:00"
    lines = [r.getMessage() for r in caplog.records if "BUDGET ALERT" in r.getMessage()]
    assert len(lines) == 1 and "team:eng monthly" in lines[0]
    assert not any("T0KEN" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("provider_env")
async def test_a_failing_webhook_never_blocks_traffic(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llm_proxy")
    async with mock_api() as (_api, url):
        budgets = {
            "teams": [{"name": "eng", "monthly_limit_usd": 100, "alert_threshold": 0.0001}],
            "alert_webhook": "http://127.0.0.1:9/unreachable",
        }
        async with start_proxy(budget_config(url, budgets), tmp_path, clock=FakeClock()) as proxy:
            for _ in range(3):
                assert (await proxy.messages()).status_code == 200
            for _ in range(300):
                if proxy.llm.alerts.failed:
                    break
                await asyncio.sleep(0.01)
            assert proxy.llm.alerts.failed == 1
            assert len(await proxy.alerts()) == 1
    assert any("webhook at 127.0.0.1:9 failed" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("provider_env")
async def test_daily_budget_resets_at_midnight_utc_through_the_proxy(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 27, 23, 59, 0, tzinfo=UTC))
    async with mock_api() as (_api, url):
        budgets = {"virtual_key_overrides": [{"id": "alice", "daily_limit_usd": 0.01}]}
        async with start_proxy(budget_config(url, budgets), tmp_path, clock=clock) as proxy:
            assert (await proxy.messages()).status_code == 200
            refused = await proxy.messages()
            assert refused.status_code == 402
            assert "resets at 2026-11-28T00:00:00Z" in refused.json()["error"]["message"]
            clock.set(datetime(2026, 11, 28, 0, 0, 0, tzinfo=UTC))
            assert (await proxy.messages()).status_code == 200


@pytest.mark.usefixtures("provider_env")
async def test_fifty_concurrent_requests_against_a_nearly_spent_budget(tmp_path: Path) -> None:
    async with mock_api() as (api, url):
        budgets = {"virtual_key_overrides": [{"id": "alice", "daily_limit_usd": 0.05}]}
        async with start_proxy(budget_config(url, budgets), tmp_path, clock=FakeClock()) as proxy:
            assert (await proxy.messages()).status_code == 200
            [first] = await proxy.ledger()
            one_request = first.cost_usd
            assert 0.03 < one_request < 0.05  # so the budget is nearly spent: room for less than one more

            api.hold = asyncio.Event()  # keep admitted requests in flight while the rest arrive
            tasks = [asyncio.create_task(proxy.messages()) for _ in range(50)]
            while sum(t.done() for t in tasks) + len(api.received) - 1 < 50:
                await asyncio.sleep(0.005)
            api.hold.set()
            responses = await asyncio.gather(*tasks)

            statuses = sorted(r.status_code for r in responses)
            assert statuses.count(200) == 1
            assert set(statuses) <= {200, 402, 429}
            rows = await proxy.ledger()
            spent = sum(r.cost_usd for r in rows)
            costs = [r.cost_usd for r in rows if r.status == "ok"]
            assert spent - 0.05 <= max(costs)  # overshoot: at most one request's cost
            status = {s["budget"]: s for s in await proxy.llm.budget_status()}
            assert status["key:alice"]["spent_usd"] == pytest.approx(spent)
            assert status["key:alice"]["reserved_usd"] == 0
            refused = [r.json()["error"] for r in responses if r.status_code != 200]
            assert all(e["type"] in ("rate_limit_error", "billing_error") for e in refused)
            assert (await proxy.messages()).status_code == 402  # now spent, not merely reserved


@pytest.mark.usefixtures("provider_env")
async def test_restart_keeps_the_spend_of_the_current_periods(tmp_path: Path) -> None:
    clock = FakeClock()
    async with mock_api() as (_api, url):
        budgets = {
            "teams": [{"name": "eng", "monthly_limit_usd": 0.07, "alert_threshold": 0.5}],
            "virtual_key_overrides": [{"id": "alice", "daily_limit_usd": 5}],
        }
        config = budget_config(url, budgets)
        async with start_proxy(config, tmp_path, clock=clock) as proxy:
            for _ in range(2):
                assert (await proxy.messages()).status_code == 200
            before: dict[Any, Any] = {s["budget"]: s["spent_usd"] for s in await proxy.llm.budget_status()}
            assert len(await proxy.alerts()) == 1
        assert 0.05 < before["team:eng"] < 0.07
        clock.advance(3600)
        async with start_proxy(config, tmp_path, clock=clock) as proxy:
            after = {s["budget"]: s["spent_usd"] for s in await proxy.llm.budget_status()}
            assert after == pytest.approx(before)
            assert (await proxy.messages(key=KEY_BOB)).status_code == 200  # admitted: still below $0.07
            assert (await proxy.messages(key=KEY_BOB)).status_code == 402
            assert len(await proxy.alerts()) == 2  # the threshold alert was not sent again; exhausted was
        clock.set(datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))
        async with start_proxy(config, tmp_path, clock=clock) as proxy:  # a new month starts from zero
            assert {s["budget"]: s["spent_usd"] for s in await proxy.llm.budget_status()} == {
                "team:eng": 0,
                "key:alice": 0,
            }
            assert (await proxy.messages()).status_code == 200
