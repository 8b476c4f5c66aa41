"""The failure policy around Redis (`GuardedCounterStore`), against a redis-server of the test's own
that it stops and starts, and a listener that never answers (a hang must not be one)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_common.counters.guarded import Concern, CounterStoreUnavailable, GuardedCounterStore
from gateway_common.counters.health import PROBE_INTERVAL, StoreHealth
from gateway_common.counters.redis_store import RedisCounterStore
from gateway_common.counters.resp_scripts import RespScripts
from gateway_common.redis_connection import open_redis
from policies.counters import SlotCheck, SpendCheck, SpendState, WindowCheck
from policies.counters_settings import CountersSettings, OnUnavailable, WhenUnavailable
from tests.redis_support import OwnRedis, own_redis_server

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis_server(tmp_path) as running:
        yield running


def guarded(
    url: str, policy: OnUnavailable, clock: ManualClock, scripts: str
) -> tuple[GuardedCounterStore, StoreHealth]:
    """``scripts``: the client the scripts run through, ``"resp"`` or ``"redis-py"``."""
    settings = CountersSettings(backend="redis", url=url, timeout_ms=200)
    health = StoreHealth("redis", clock=clock)
    resp = RespScripts.from_url(url, 0.2) if scripts == "resp" else None
    store = GuardedCounterStore(RedisCounterStore(open_redis(settings), "t:", resp), health, policy, 0.2)
    return store, health


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_an_outage_refuses_budgets_allows_rate_limits_and_recovers(
    scripts: str, server: OwnRedis, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    store, health = guarded(server.url, OnUnavailable(), clock, scripts)
    window = [WindowCheck("rl:k", 1, 60.0)]
    slots = [SlotCheck("rl:c", 1)]
    spend = [SpendCheck("budget:b", 10.0, T0 + 86_400)]
    try:
        assert await store.window_hit(window, T0) is None
        assert await store.slots_acquire(slots, "held", T0, 3600.0) is None
        assert await store.spend_reserve(spend, "held", 1.0, T0, 3600.0) is None

        server.stop()
        caplog.set_level(logging.INFO, "mcp_gateway")
        began = time.monotonic()
        with pytest.raises(CounterStoreUnavailable) as refused:
            await store.spend_reserve(spend, "r2", 1.0, T0 + 1, 3600.0)
        assert refused.value.concern is Concern.BUDGETS and refused.value.retry_after > 0
        assert not health.available and health.outages == 1
        for n in range(20):  # within the probe interval: answered at once, nothing logged again
            assert await store.window_hit(window, T0 + 2) is None, "rate limits fail open by default"
            with pytest.raises(CounterStoreUnavailable):
                await store.spend_reserve(spend, f"x{n}", 1.0, T0 + 2, 3600.0)
        # Bookkeeping is kept: the held slot and reservation are released and settled later.
        await store.slots_release(["rl:c"], "held")
        assert await store.spend_settle(["budget:b"], "held", 2.5, T0 + 3) == [SpendState(0.0, 0.0, 0)]
        assert await store.once("alert:x", T0 + 86_400) is False
        assert store.pending == 2
        assert time.monotonic() - began < 2.0, "no call waited on the dead store"
        errors = [r for r in caplog.records if "UNAVAILABLE" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR

        server.start()  # same port, empty: counting resumes without a new store
        assert await store.window_hit(window, T0 + 4) is None, "still inside the probe interval"
        clock.now += PROBE_INTERVAL
        assert await store.window_hit(window, T0 + 5) is None
        assert health.available
        assert any("available again" in r.getMessage() for r in caplog.records)
        for _ in range(100):
            if store.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert store.pending == 0
        inner = store.inner
        assert await inner.spend_state("budget:b", T0 + 6) == SpendState(2.5, 0.0, 0), "the settlement landed"
        assert await store.window_hit(window, T0 + 6) is not None, "counting again: the limit holds"
        assert await store.slots_acquire(slots, "new", T0 + 6, 3600.0) is None
    finally:
        await store.aclose()
        await store.inner.aclose()  # type: ignore[attr-defined]


async def test_rate_limits_refuse_when_the_policy_says_so(
    scripts: str, server: OwnRedis, clock: ManualClock
) -> None:
    policy = OnUnavailable(budgets=WhenUnavailable.ALLOW, rate_limits=WhenUnavailable.REFUSE)
    store, _ = guarded(server.url, policy, clock, scripts)
    refusals: list[Concern] = []

    def refusal(concern: Concern, retry_after: float) -> BaseException:
        refusals.append(concern)
        return RuntimeError(f"refused {concern}")

    tools = store.with_refusal(refusal)
    try:
        server.stop()
        assert await tools.spend_reserve([SpendCheck("b", 1.0, T0 + 86_400)], "l", 5.0, T0, 60.0) is None
        with pytest.raises(RuntimeError, match="refused rate_limits"):
            await tools.window_hit([WindowCheck("k", 1, 60.0)], T0)
        with pytest.raises(RuntimeError, match="refused rate_limits"):
            await tools.slots_acquire([SlotCheck("c", 1)], "l", T0, 60.0)
        assert refusals == [Concern.RATE_LIMITS, Concern.RATE_LIMITS]
        assert not store.health.available, "the views share one health"
    finally:
        await store.aclose()
        await store.inner.aclose()  # type: ignore[attr-defined]


async def test_a_redis_that_never_answers_costs_one_timeout_not_a_hang(
    scripts: str, clock: ManualClock
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # accepts connections (the kernel does) and never says a word
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        store, health = guarded(url, OnUnavailable(), clock, scripts)
        try:
            began = time.monotonic()
            assert await store.window_hit([WindowCheck("k", 1, 60.0)], T0) is None
            first = time.monotonic() - began
            assert 0.15 < first < 1.0, first
            began = time.monotonic()
            with pytest.raises(CounterStoreUnavailable):
                await store.spend_reserve([SpendCheck("b", 1.0, T0 + 86_400)], "l", 1.0, T0, 60.0)
            assert time.monotonic() - began < 0.05, "while down, calls do not wait again"
            assert not health.available
        finally:
            await store.aclose()
            await store.inner.aclose()  # type: ignore[attr-defined]
