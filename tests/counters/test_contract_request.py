"""The `CounterStore` contract for a model request's two calls (`admit`, `finish`) and `slots_used`:
the memory store and the Redis store give the same answers (``store`` fixture: both).

`admit` must do what `slots_acquire`, `window_hit` and `spend_reserve` did one after the other,
all or nothing; `finish` what `slots_release`, `window_add` and `spend_settle` did.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from gateway_common.counters.redis_store import RedisCounterStore
from policies.counters import (
    CounterStore,
    SlotCheck,
    SlotDenial,
    SpendCheck,
    SpendDenial,
    SpendState,
    WindowCheck,
    WindowDenial,
)

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
MINUTE = 60.0
SLOTS = (SlotCheck("rl:key:c", 5), SlotCheck("rl:team:c", 2))
WINDOWS = (WindowCheck("rl:key:rpm", 3, MINUTE), WindowCheck("rl:key:tpm", 100, MINUTE, cost=0.0))
SPEND = (SpendCheck("budget:org:x", 10.0, T0 + 86_400), SpendCheck("budget:team:x", 1.0, T0 + 86_400))
"""Tuples, as a rate or budget plan holds them (the Redis store encodes a tuple once)."""


async def admit(store: CounterStore, lease: str, now: float, amount: float = 0.25) -> object:
    return await store.admit(
        lease, now, slots=SLOTS, slot_ttl=30.0, windows=WINDOWS, spend=SPEND, amount=amount, spend_ttl=30.0
    )


async def test_admit_takes_a_slot_charges_the_windows_and_reserves_the_spend(store: CounterStore) -> None:
    assert await admit(store, "r1", T0) is None
    assert await store.slots_used("rl:key:c", T0) == 1
    assert await store.slots_used("rl:team:c", T0) == 1
    assert await store.window_used("rl:key:rpm", MINUTE, T0) == 1.0
    assert await store.window_used("rl:key:tpm", MINUTE, T0) == 0.0, "a zero-cost check only checks"
    assert await store.spend_state("budget:org:x", T0) == SpendState(0.0, 0.25, 1)
    assert await store.spend_state("budget:team:x", T0) == SpendState(0.0, 0.25, 1)


async def test_a_full_slot_refuses_first_and_nothing_is_taken(store: CounterStore) -> None:
    assert await admit(store, "r1", T0) is None
    assert await admit(store, "r2", T0 + 1) is None
    assert await admit(store, "r3", T0 + 2) == SlotDenial(1), "the team's 2 slots are held"
    assert await store.slots_used("rl:key:c", T0 + 2) == 2, "no slot under the key either"
    assert await store.window_used("rl:key:rpm", MINUTE, T0 + 2) == 2.0
    assert await store.spend_state("budget:team:x", T0 + 2) == SpendState(0.0, 0.5, 2)
    # A holder renewing under its own lease is not refused by its own slot (as slots_acquire).
    assert await admit(store, "r2", T0 + 3) is None


async def test_a_full_window_refuses_with_its_retry_and_takes_no_slot(store: CounterStore) -> None:
    for n in range(3):
        assert await admit(store, f"r{n}", T0 + n * 10, amount=0.0) is None
        slot_keys, spend_keys = ["rl:key:c", "rl:team:c"], ["budget:org:x", "budget:team:x"]
        await store.finish(f"r{n}", T0 + n * 10 + 1, slot_keys=slot_keys, spend_keys=spend_keys)
    denial = await admit(store, "r3", T0 + 30)
    assert denial == WindowDenial(0, 3.0, 30.0), "as window_hit says: the first slice leaves at T0 + 60"
    assert await store.slots_used("rl:team:c", T0 + 30) == 0
    assert await store.spend_state("budget:org:x", T0 + 30) == SpendState(0.0, 0.0, 0)
    await store.window_add("rl:key:tpm", 100.0, MINUTE, T0 + 31)
    assert await store.admit("r4", T0 + 61, windows=WINDOWS) == WindowDenial(1, 100.0, 30.0)


async def test_a_spent_budget_refuses_and_charges_no_window(store: CounterStore) -> None:
    assert await admit(store, "r1", T0, amount=1.0) is None
    denial = await admit(store, "r2", T0 + 1)
    assert denial == SpendDenial(1, SpendState(0.0, 1.0, 1))
    assert await store.window_used("rl:key:rpm", MINUTE, T0 + 1) == 1.0, "the refused request counted nothing"
    assert await store.slots_used("rl:key:c", T0 + 1) == 1
    assert await store.spend_state("budget:org:x", T0 + 1) == SpendState(0.0, 1.0, 1)


async def test_finish_releases_counts_tokens_and_settles(store: CounterStore) -> None:
    assert await admit(store, "r1", T0, amount=0.5) is None
    assert await admit(store, "r2", T0, amount=0.25) is None
    states = await store.finish(
        "r1",
        T0 + 1,
        slot_keys=["rl:key:c", "rl:team:c"],
        token_keys=["rl:key:tpm", "rl:team:tpm"],
        tokens=40.0,
        window=MINUTE,
        spend_keys=["budget:org:x", "budget:team:x"],
        actual=0.125,
    )
    assert states == [SpendState(0.125, 0.25, 1), SpendState(0.125, 0.25, 1)]
    assert await store.slots_used("rl:team:c", T0 + 1) == 1
    assert await store.window_used("rl:key:tpm", MINUTE, T0 + 1) == 40.0
    assert await store.window_used("rl:team:tpm", MINUTE, T0 + 1) == 40.0
    assert await store.finish("r2", T0 + 2, token_keys=["rl:key:tpm"], tokens=0.0) == []
    assert await store.window_used("rl:key:tpm", MINUTE, T0 + 2) == 40.0, "no tokens, nothing added"
    assert await store.finish("nobody", T0 + 3) == []


async def test_admit_and_finish_leave_what_the_separate_calls_leave(store: CounterStore) -> None:
    """One request through the combined calls, another through the six separate ones: same state."""
    assert await admit(store, "a", T0, amount=0.5) is None
    await store.finish(
        "a",
        T0 + 1,
        slot_keys=["rl:key:c"],
        token_keys=["rl:key:tpm"],
        tokens=7.0,
        spend_keys=["budget:org:x"],
        actual=0.25,
    )
    assert await store.slots_acquire(SLOTS, "b", T0 + 2, 30.0) is None
    assert await store.window_hit(WINDOWS, T0 + 2) is None
    assert await store.spend_reserve(SPEND, "b", 0.5, T0 + 2, 30.0) is None
    await store.slots_release(["rl:key:c"], "b")
    await store.window_add("rl:key:tpm", 7.0, MINUTE, T0 + 3)
    assert await store.spend_settle(["budget:org:x"], "b", 0.25, T0 + 3) == [SpendState(0.5, 0.0, 0)]
    assert await store.slots_used("rl:key:c", T0 + 3) == 0
    assert await store.slots_used("rl:team:c", T0 + 3) == 2, "released only where asked"
    assert await store.window_used("rl:key:rpm", MINUTE, T0 + 3) == 2.0
    assert await store.window_used("rl:key:tpm", MINUTE, T0 + 3) == 14.0
    assert await store.spend_state("budget:team:x", T0 + 3) == SpendState(0.0, 1.0, 2)


async def test_slots_used_counts_live_leases_only(store: CounterStore) -> None:
    assert await store.slots_used("rl:none", T0) == 0
    assert await store.slots_acquire([SlotCheck("rl:s", 3)], "a", T0, 10.0) is None
    assert await store.slots_acquire([SlotCheck("rl:s", 3)], "b", T0 + 5, 10.0) is None
    assert await store.slots_used("rl:s", T0 + 5) == 2
    assert await store.slots_used("rl:s", T0 + 10) == 1, "a lease is gone at its expiry"
    await store.slots_release(["rl:s"], "b")
    assert await store.slots_used("rl:s", T0 + 10) == 0
    assert await store.slots_acquire([SlotCheck("rl:s", 1)], "c", T0 + 10, 10.0) is None


# -- Redis only ------------------------------------------------------------------------------


async def test_concurrent_admissions_never_pass_a_limit_together(redis_store: RedisCounterStore) -> None:
    """Two clients (as two replicas) admitting 40 requests at once: the tightest limit holds exactly."""
    kwargs = redis_store.client.get_connection_kwargs()
    other = RedisCounterStore(
        Redis(host=kwargs.get("host", "127.0.0.1"), port=kwargs.get("port", 6379), db=kwargs.get("db", 0)),
        redis_store.prefix.removesuffix("c:"),
    )
    slots = [SlotCheck("rl:c", 30)]
    windows = [WindowCheck("rl:rpm", 12, MINUTE)]
    spend = [SpendCheck("budget:b", 1.0, T0 + 86_400)]
    try:
        stores = (redis_store, other)
        answers = await asyncio.gather(
            *(
                stores[n % 2].admit(
                    f"l{n}",
                    T0,
                    slots=slots,
                    slot_ttl=60.0,
                    windows=windows,
                    spend=spend,
                    amount=0.125,
                    spend_ttl=60.0,
                )
                for n in range(40)
            )
        )
    finally:
        await other.aclose()
    assert sum(a is None for a in answers) == 8, "the budget admits 8 of 0.125"
    assert sum(isinstance(a, SpendDenial) for a in answers) == 32
    assert await redis_store.slots_used("rl:c", T0) == 8, "refused requests hold no slot"
    assert await redis_store.window_used("rl:rpm", MINUTE, T0) == 8.0


async def test_keys_written_by_admit_and_finish_expire(redis_store: RedisCounterStore) -> None:
    now = 1_700_000_000.0
    assert (
        await redis_store.admit(
            "l",
            now,
            slots=[SlotCheck("rl:s", 5)],
            slot_ttl=3600.0,
            windows=[WindowCheck("rl:a", 5, MINUTE)],
            spend=[SpendCheck("budget:b", 5.0, now + 86_400)],
            amount=1.0,
            spend_ttl=3600.0,
        )
        is None
    )
    await redis_store.finish("l", now, token_keys=["rl:t"], tokens=5.0, spend_keys=["budget:c"], actual=1.0)
    client = redis_store.client
    keys = [key async for key in client.scan_iter(match=redis_store.prefix + "*")]
    ttls = {key.decode().removeprefix(redis_store.prefix): await client.ttl(key) for key in keys}
    assert set(ttls) == {"rl:s", "w2:rl:a", "budget:b", "w2:rl:t", "budget:c"}
    assert ttls["w2:rl:a"] == ttls["w2:rl:t"] == 61
    assert 3600 <= ttls["rl:s"] <= 3601
    assert all(0 < ttl <= 40 * 86_400 for ttl in ttls.values()), ttls


async def test_a_plan_naming_one_counter_twice_counts_it_twice(store: CounterStore) -> None:
    """Each check is an addition of its own (the Redis scripts reuse a check's read for the write
    after it, so a key named twice must be read again for its second write)."""
    window = WindowCheck("rl:dup:rpm", 5, MINUTE)
    spend = SpendCheck("budget:dup", 10.0, T0 + 86_400)
    assert await store.window_hit([window, window], T0) is None
    assert await store.window_used("rl:dup:rpm", MINUTE, T0) == 2.0
    assert await store.spend_reserve([spend, spend], "r1", 0.5, T0, 30.0) is None
    assert await store.spend_state("budget:dup", T0) == SpendState(0.0, 0.5, 1), "one lease holds once"
    twice = (window, window)
    assert (
        await store.admit("r2", T0 + 1, windows=twice, spend=(spend, spend), amount=1.0, spend_ttl=30.0)
        is None
    )
    assert await store.window_used("rl:dup:rpm", MINUTE, T0 + 1) == 4.0
    assert await store.spend_state("budget:dup", T0 + 1) == SpendState(0.0, 1.5, 2)
    assert await store.admit("r3", T0 + 2, windows=twice) is None, "both checks see the count before"
    assert await store.window_used("rl:dup:rpm", MINUTE, T0 + 2) == 6.0
    assert await store.admit("r4", T0 + 2, windows=twice) == WindowDenial(0, 6.0, 58.0)
    await store.finish("r2", T0 + 3, token_keys=("rl:dup:tpm", "rl:dup:tpm"), tokens=7.0, window=MINUTE)
    assert await store.window_used("rl:dup:tpm", MINUTE, T0 + 3) == 14.0
