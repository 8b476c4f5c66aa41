"""The `CounterStore` contract: the memory store and the Redis store give the same answers.

Every test runs against both (the ``store`` fixture). Times come from the test, never a
clock: the stores take ``now`` as an argument.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from gateway_common.counters.redis_store import RedisCounterStore
from policies.counters import CounterStore, SlotCheck, SpendCheck, SpendState, WindowCheck, WindowDenial

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
MINUTE = 60.0


async def test_a_window_admits_up_to_its_limit_then_says_when_to_retry(store: CounterStore) -> None:
    check = [WindowCheck("rl:k", 3, MINUTE)]
    assert [await store.window_hit(check, T0 + t) for t in (0.0, 10.0, 10.5)] == [None, None, None]
    assert await store.window_hit(check, T0 + 20.0) == WindowDenial(0, 3.0, 40.0)
    assert await store.window_used("rl:k", MINUTE, T0 + 20.0) == 3.0
    # The first slice leaves the window at T0 + 60: one request fits again, not two.
    assert await store.window_hit(check, T0 + 60.0) is None
    denial = await store.window_hit(check, T0 + 60.0)
    assert denial == WindowDenial(0, 3.0, 10.0)
    assert await store.window_used("rl:k", MINUTE, T0 + 200.0) == 0.0


async def test_a_cost_that_does_not_fit_is_refused_even_under_the_limit(store: CounterStore) -> None:
    assert await store.window_hit([WindowCheck("rl:c", 5, MINUTE, cost=4.0)], T0) is None
    assert await store.window_hit([WindowCheck("rl:c", 5, MINUTE, cost=2.0)], T0 + 1) == WindowDenial(
        0, 4.0, 59.0
    )
    assert await store.window_hit([WindowCheck("rl:c", 5, MINUTE, cost=9.0)], T0 + 2) == WindowDenial(
        0, 4.0, MINUTE
    ), "a cost over the limit never fits: retry after a whole window"


async def test_a_zero_cost_check_only_checks_and_window_add_charges(store: CounterStore) -> None:
    tokens = [WindowCheck("rl:t", 100, MINUTE, cost=0.0)]
    assert await store.window_hit(tokens, T0) is None
    assert await store.window_used("rl:t", MINUTE, T0) == 0.0
    await store.window_add("rl:t", 150.0, MINUTE, T0 + 1)
    await store.window_add("rl:t", 0.0, MINUTE, T0 + 1)
    denial = await store.window_hit(tokens, T0 + 2)
    assert denial is not None and denial.used == 150.0 and denial.retry_after == 59.0


async def test_several_windows_are_charged_all_or_nothing(store: CounterStore) -> None:
    key = WindowCheck("rl:key", 10, MINUTE)
    team = WindowCheck("rl:team", 1, MINUTE)
    assert await store.window_hit([key, team], T0) is None
    denial = await store.window_hit([key, team], T0 + 1)
    assert denial is not None and denial.index == 1
    assert await store.window_used("rl:key", MINUTE, T0 + 1) == 1.0, "the refused hit charged nothing"


async def test_slots_are_held_by_lease_released_and_expire(store: CounterStore) -> None:
    two = [SlotCheck("rl:s", 2)]
    assert await store.slots_acquire(two, "a", T0, 30.0) is None
    assert await store.slots_acquire(two, "b", T0, 30.0) is None
    assert await store.slots_acquire(two, "c", T0, 30.0) == 0
    assert await store.slots_acquire(two, "a", T0 + 1, 30.0) is None, "a holder may renew its own lease"
    await store.slots_release(["rl:s"], "b")
    assert await store.slots_acquire(two, "c", T0 + 2, 30.0) is None
    assert await store.slots_acquire(two, "d", T0 + 3, 30.0) == 0
    # Lease a (renewed at T0+1) expires at T0+31, c at T0+32: a dead replica's slots come back.
    assert await store.slots_acquire(two, "d", T0 + 31.0, 30.0) is None
    assert await store.slots_acquire(two, "e", T0 + 31.5, 30.0) == 0
    assert await store.slots_acquire(two, "e", T0 + 32.0, 30.0) is None


async def test_slots_are_taken_under_every_key_or_none(store: CounterStore) -> None:
    checks = [SlotCheck("rl:key", 5), SlotCheck("rl:team", 1)]
    assert await store.slots_acquire(checks, "a", T0, 60.0) is None
    assert await store.slots_acquire(checks, "b", T0, 60.0) == 1
    assert await store.slots_acquire([SlotCheck("rl:key", 2)], "c", T0, 60.0) is None, (
        "b took no slot under the key"
    )
    await store.slots_release(["rl:key", "rl:team"], "a")
    assert await store.slots_acquire(checks, "b", T0, 60.0) is None


async def test_spend_reserves_until_committed_then_settles_to_the_real_cost(store: CounterStore) -> None:
    check = [SpendCheck("budget:team:a:daily:x", 1.0, T0 + 86_400)]
    assert await store.spend_reserve(check, "r1", 0.5, T0, 3600.0) is None
    assert await store.spend_reserve(check, "r2", 0.5, T0, 3600.0) is None
    denial = await store.spend_reserve(check, "r3", 0.25, T0, 3600.0)
    assert denial is not None and denial.index == 0 and denial.state == SpendState(0.0, 1.0, 2)
    assert await store.spend_settle(["budget:team:a:daily:x"], "r1", 0.125, T0 + 1) == [
        SpendState(0.125, 0.5, 1)
    ]
    assert await store.spend_reserve(check, "r3", 0.25, T0 + 2, 3600.0) is None
    assert await store.spend_state("budget:team:a:daily:x", T0 + 3) == SpendState(0.125, 0.75, 2)
    # Unsettled reservations (their replica died) lapse after their ttl; the spend stays.
    assert await store.spend_state("budget:team:a:daily:x", T0 + 3602.0) == SpendState(0.125, 0.0, 0)
    assert await store.spend_settle(["budget:team:a:daily:x"], "r2", 2.0, T0 + 3603) == [
        SpendState(2.125, 0.0, 0)
    ], "a late settlement still lands"
    denial = await store.spend_reserve(check, "r4", 0.0, T0 + 3604, 3600.0)
    assert denial is not None and denial.state.spent == 2.125


async def test_reserving_again_under_one_lease_replaces_its_amount(store: CounterStore) -> None:
    check = [SpendCheck("budget:org:daily:x", 10.0, T0 + 86_400)]
    assert await store.spend_reserve(check, "r", 2.0, T0, 60.0) is None
    assert await store.spend_reserve(check, "r", 3.0, T0, 60.0) is None
    assert await store.spend_state("budget:org:daily:x", T0) == SpendState(0.0, 3.0, 1)


async def test_spend_is_reserved_on_every_counter_or_none(store: CounterStore) -> None:
    org = SpendCheck("budget:org:daily:x", 10.0, T0 + 86_400)
    team = SpendCheck("budget:team:t:daily:x", 1.0, T0 + 86_400)
    assert await store.spend_reserve([org, team], "a", 1.0, T0, 60.0) is None
    denial = await store.spend_reserve([org, team], "b", 1.0, T0, 60.0)
    assert denial is not None and denial.index == 1
    assert await store.spend_state("budget:org:daily:x", T0) == SpendState(0.0, 1.0, 1)


async def test_seeding_only_sets_a_counter_the_store_has_never_seen(store: CounterStore) -> None:
    await store.spend_seed("budget:org:monthly:x", 4.5, T0 + 86_400)
    await store.spend_seed("budget:org:monthly:x", 9.0, T0 + 86_400)
    assert await store.spend_state("budget:org:monthly:x", T0) == SpendState(4.5, 0.0, 0)
    await store.spend_settle(["budget:team:t:monthly:x"], "r", 1.0, T0)
    await store.spend_seed("budget:team:t:monthly:x", 7.0, T0 + 86_400)
    assert await store.spend_state("budget:team:t:monthly:x", T0) == SpendState(1.0, 0.0, 0)
    assert await store.spend_state("budget:never", T0) == SpendState(0.0, 0.0, 0)


async def test_once_is_true_only_the_first_time(store: CounterStore) -> None:
    assert await store.once("alert:threshold:x", T0 + 86_400) is True
    assert await store.once("alert:threshold:x", T0 + 86_400) is False
    assert await store.once("alert:threshold:y", T0 + 86_400) is True


# -- Redis only ------------------------------------------------------------------------------


async def test_every_redis_key_expires(redis_store: RedisCounterStore) -> None:
    now = 1_700_000_000.0  # a past time, as an injected clock gives: keys are still kept, never lost
    await redis_store.window_hit([WindowCheck("rl:a", 5, MINUTE)], now)
    await redis_store.window_add("rl:t", 5.0, MINUTE, now)
    await redis_store.slots_acquire([SlotCheck("rl:s", 5)], "l", now, 3600.0)
    await redis_store.spend_reserve([SpendCheck("budget:b", 5.0, now + 86_400)], "l", 1.0, now, 3600.0)
    await redis_store.spend_settle(["budget:c"], "l", 1.0, now)
    await redis_store.spend_seed("budget:d", 1.0, now + 86_400)
    await redis_store.once("alert:e", now + 86_400)
    client = redis_store.client
    keys = [key async for key in client.scan_iter(match=redis_store.prefix + "*")]
    assert len(keys) == 7
    ttls = {key.decode().removeprefix(redis_store.prefix): await client.ttl(key) for key in keys}
    assert ttls["w2:rl:a"] == ttls["w2:rl:t"] == 61  # windows under their format's own prefix
    assert 3600 <= ttls["rl:s"] <= 3601
    assert all(0 < ttl <= 40 * 86_400 for ttl in ttls.values()), ttls
    future = 4_000_000_000.0
    await redis_store.spend_seed("budget:f", 1.0, future)
    assert await client.expiretime(redis_store.key("budget:f")) == int(future)


async def test_redis_scripts_come_back_after_a_script_flush(redis_store: RedisCounterStore) -> None:
    """A Redis restart forgets loaded scripts: EVALSHA fails once and redis-py loads it again."""
    assert await redis_store.window_hit([WindowCheck("rl:f", 5, MINUTE)], T0) is None
    await redis_store.client.script_flush()
    assert await redis_store.window_used("rl:f", MINUTE, T0) == 1.0


async def test_concurrent_clients_never_pass_a_limit_together(redis_store: RedisCounterStore) -> None:
    """Two clients (as two replicas) hitting one 25-request window with 80 requests at once: exactly 25."""
    other = RedisCounterStore(Redis.from_url(_url(redis_store)), redis_store.prefix.removesuffix("c:"))
    check = [WindowCheck("rl:shared", 25, MINUTE)]
    slot = [SlotCheck("rl:slots", 4)]
    spend = [SpendCheck("budget:shared", 1.0, T0 + 86_400)]
    try:
        stores = (redis_store, other)
        hits = await asyncio.gather(*(stores[n % 2].window_hit(check, T0) for n in range(80)))
        slots = await asyncio.gather(
            *(stores[n % 2].slots_acquire(slot, f"l{n}", T0, 60.0) for n in range(20))
        )
        reserved = await asyncio.gather(
            *(stores[n % 2].spend_reserve(spend, f"l{n}", 0.125, T0, 60.0) for n in range(20))
        )
    finally:
        await other.aclose()
    assert sum(hit is None for hit in hits) == 25
    assert sum(taken is None for taken in slots) == 4
    assert sum(r is None for r in reserved) == 8


def _url(store: RedisCounterStore) -> str:
    kwargs = store.client.get_connection_kwargs()
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
