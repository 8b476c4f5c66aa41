"""A model request's two calls (`admit`, `finish`) while Redis is down degrade exactly as the six
separate calls did: each concern the request checks gets its own policy (a refusing one refuses
the request), and the bookkeeping after it is kept and replayed when Redis is back."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest

from gateway_app.counter_store import build_counter_stores
from gateway_common.counters.guarded import Concern, CounterStoreUnavailable, GuardedCounterStore
from gateway_common.counters.health import PROBE_INTERVAL
from llm_proxy.errors import GatewayUnavailable
from policies.counters import SlotCheck, SpendCheck, SpendState, WindowCheck
from policies.counters_settings import CountersSettings, OnUnavailable, WhenUnavailable
from tests.counters.test_outage import ManualClock, guarded
from tests.redis_support import OwnRedis, own_redis_server

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
SLOTS = [SlotCheck("rl:c", 2)]
WINDOWS = [WindowCheck("rl:rpm", 10, 60.0), WindowCheck("rl:tpm", 1000, 60.0, 0.0)]
SPEND = [SpendCheck("budget:b", 10.0, T0 + 86_400)]
POLICIES = [
    OnUnavailable(budgets=budgets, rate_limits=rate_limits)
    for budgets, rate_limits in itertools.product(WhenUnavailable, repeat=2)
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis_server(tmp_path) as running:
        yield running


async def outcome(call: Awaitable[object]) -> Concern | None:
    """None when the call let the request in, else the concern that refused it."""
    try:
        await call
    except CounterStoreUnavailable as refused:
        return refused.concern
    return None


async def separately(store: GuardedCounterStore, checks: tuple[bool, ...]) -> Concern | None:
    """What the gateway did before `admit`: slots, then windows, then the budget reservation."""
    slots, windows, spend = checks
    try:
        if slots:
            assert await store.slots_acquire(SLOTS, "s", T0, 60.0) is None
        if windows:
            assert await store.window_hit(WINDOWS, T0) is None
        if spend:
            assert await store.spend_reserve(SPEND, "s", 1.0, T0, 60.0) is None
    except CounterStoreUnavailable as refused:
        return refused.concern
    return None


async def test_admit_while_down_refuses_or_allows_as_the_separate_calls_did(
    scripts: str, server: OwnRedis
) -> None:
    server.stop()
    for policy in POLICIES:
        store, _ = guarded(server.url, policy, ManualClock(), scripts)
        try:
            for checks in itertools.product((False, True), repeat=3):
                slots, windows, spend = checks
                combined = await outcome(
                    store.admit(
                        "a",
                        T0,
                        slots=SLOTS if slots else (),
                        slot_ttl=60.0,
                        windows=WINDOWS if windows else (),
                        spend=SPEND if spend else (),
                        amount=1.0,
                        spend_ttl=60.0,
                    )
                )
                assert combined == await separately(store, checks), (policy, checks)
                refusing = {
                    concern
                    for concern, checked, when in (
                        (Concern.RATE_LIMITS, slots or windows, policy.rate_limits),
                        (Concern.BUDGETS, spend, policy.budgets),
                    )
                    if checked and when is WhenUnavailable.REFUSE
                }
                assert (combined is None) == (not refusing), (policy, checks)
                if refusing == {Concern.RATE_LIMITS, Concern.BUDGETS}:
                    assert combined is Concern.RATE_LIMITS, "checked first, as before"
        finally:
            await store.aclose()
            await store.inner.aclose()  # type: ignore[attr-defined]


async def test_finish_while_down_is_kept_and_lands_when_redis_is_back(scripts: str, server: OwnRedis) -> None:
    clock = ManualClock()
    store, health = guarded(server.url, OnUnavailable(), clock, scripts)
    try:
        admitted = await store.admit(
            "r", T0, slots=SLOTS, slot_ttl=3600.0, windows=WINDOWS, spend=SPEND, amount=2.0, spend_ttl=3600.0
        )
        assert admitted is None
        server.stop()
        states = await store.finish(
            "r",
            T0 + 1,
            slot_keys=["rl:c"],
            token_keys=["rl:tpm"],
            tokens=300.0,
            spend_keys=["budget:b"],
            actual=0.5,
        )
        assert states == [SpendState(0.0, 0.0, 0)], "unknown until replayed: no alert fires"
        assert store.pending == 1 and not health.available
        with pytest.raises(CounterStoreUnavailable):
            await store.slots_used("rl:c", T0 + 1)

        server.start()  # empty again: the replay recreates what the finish wrote
        clock.now += PROBE_INTERVAL
        assert await store.window_hit([WindowCheck("rl:other", 5, 60.0)], T0 + 2) is None
        for _ in range(100):
            if store.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert store.pending == 0
        assert await store.spend_state("budget:b", T0 + 3) == SpendState(0.5, 0.0, 0)
        assert await store.window_used("rl:tpm", 60.0, T0 + 3) == 300.0
        assert await store.slots_used("rl:c", T0 + 3) == 0
    finally:
        await store.aclose()
        await store.inner.aclose()  # type: ignore[attr-defined]


async def test_the_gateways_store_over_a_redis_that_never_answers_is_bounded_by_its_timeout() -> None:
    """The gateway's Redis client sets no socket timeout of its own (the guarded store bounds every
    call): a listener that accepts and never answers still costs one ``timeout_ms``, not a hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        stores = build_counter_stores(CountersSettings(backend="redis", url=url, timeout_ms=200))
        try:
            began = time.monotonic()
            with pytest.raises(GatewayUnavailable):  # budgets refuse by default
                await stores.model_api.admit(
                    "l", T0, windows=WINDOWS, spend=SPEND, amount=1.0, spend_ttl=60.0
                )
            assert 0.15 < time.monotonic() - began < 1.0
            began = time.monotonic()
            assert await stores.model_api.admit("m", T0, slots=SLOTS, slot_ttl=60.0) is None, (
                "rate limits allow"
            )
            assert time.monotonic() - began < 0.05, "while down, calls do not wait again"
            assert await stores.model_api.finish("l", T0, slot_keys=["rl:c"], spend_keys=["budget:b"]) == [
                SpendState(0.0, 0.0, 0)
            ]
        finally:
            await stores.aclose()


async def test_the_gateways_store_over_a_redis_gone_silent_mid_run_is_bounded_by_its_timeout(
    server: OwnRedis,
) -> None:
    """Connected, then Redis freezes (SIGSTOP): the open connection's calls are bounded by the
    scripts client's own watchdog (the guarded store adds no timer of its own over it), and
    counting resumes when Redis does."""
    stores = build_counter_stores(
        CountersSettings(
            backend="redis", url=server.url, key_prefix=f"t{time.monotonic_ns()}:", timeout_ms=200
        )
    )
    assert stores.guarded is not None and stores.guarded._shared.bounded_inside
    try:
        assert await stores.model_api.admit("a", T0, windows=WINDOWS, spend=SPEND, amount=1.0) is None
        server.pause()
        try:
            began = time.monotonic()
            with pytest.raises(GatewayUnavailable):  # budgets refuse by default
                await stores.model_api.admit("b", T0 + 1, windows=WINDOWS, spend=SPEND, amount=1.0)
            assert 0.15 < time.monotonic() - began < 1.0
            assert not stores.health.available
        finally:
            server.resume()
        await asyncio.sleep(PROBE_INTERVAL)
        for _ in range(100):
            if await stores.model_api.admit("c", T0 + 2, windows=WINDOWS, spend=SPEND, amount=1.0) is None:
                break
            await asyncio.sleep(0.05)
        assert stores.health.available
        # a, c, and b: its command was sent before Redis froze and ran when it woke (a timeout
        # cannot unsend it), so the refused request counts: limits err on the safe side.
        assert await stores.model_api.window_used("rl:rpm", 60.0, T0 + 2) == 3.0
    finally:
        await stores.aclose()
