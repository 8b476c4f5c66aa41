"""Property: on any sequence of operations, the Redis store answers exactly as the memory store.

Hypothesis draws sequences of calls (windows of three lengths, slots, reservations with
short and long leases, settlements, seeds, alerts, and a model request's combined `admit` and
`finish` mixed with all of those) at non-decreasing times and runs each
against a fresh `MemoryCounterStore` and a `RedisCounterStore` under a fresh prefix; every
answer must be equal. Amounts are whole or quarter numbers, so both sides' float arithmetic
is exact and equality is the right test. Examples are bounded (fast in CI).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.counters import CounterStore, SlotCheck, SpendCheck, WindowCheck
from policies.memory_counters import MemoryCounterStore
from tests.counters.conftest import redis_counter_store
from tests.redis_support import delete_prefix, scratch_prefix

T0 = 1_800_000_000.0
WINDOWS = {"w30": 30.0, "w60": 60.0, "w120": 120.0}
"""A window key always has the same length (the policy code never mixes them)."""
SPEND_KEYS = ("s1", "s2")
LEASES = ("l1", "l2", "l3")

quarters = st.integers(min_value=0, max_value=12).map(lambda n: n / 4)
window_check = st.builds(
    lambda key, limit, cost: WindowCheck(key, limit, WINDOWS[key], cost),
    st.sampled_from(sorted(WINDOWS)),
    st.integers(min_value=1, max_value=6),
    st.sampled_from([0.0, 1.0, 1.0, 2.0, 7.0]),
)
slot_check = st.builds(SlotCheck, st.sampled_from(["sa", "sb"]), st.integers(min_value=1, max_value=3))
spend_check = st.builds(
    lambda key, limit: SpendCheck(key, limit, T0 + 86_400),
    st.sampled_from(SPEND_KEYS),
    st.integers(min_value=1, max_value=8).map(float),
)


def _unique(checks: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for check in checks:
        seen.setdefault(check.key, check)
    return list(seen.values())


window_ops = st.one_of(
    st.tuples(st.just("window_hit"), st.lists(window_check, min_size=1, max_size=2).map(_unique)),
    st.tuples(st.just("window_add"), st.sampled_from(sorted(WINDOWS)), st.integers(0, 4).map(float)),
    st.tuples(st.just("window_used"), st.sampled_from(sorted(WINDOWS))),
)
slot_ops = st.one_of(
    st.tuples(
        st.just("slots_acquire"),
        st.lists(slot_check, min_size=1, max_size=2).map(_unique),
        st.sampled_from(LEASES),
        st.sampled_from([5.0, 30.0]),
    ),
    st.tuples(st.just("slots_release"), st.sampled_from([["sa"], ["sa", "sb"]]), st.sampled_from(LEASES)),
)
spend_ops = st.one_of(
    st.tuples(
        st.just("spend_reserve"),
        st.lists(spend_check, min_size=1, max_size=2).map(_unique),
        st.sampled_from(LEASES),
        quarters,
        st.sampled_from([5.0, 30.0]),
    ),
    st.tuples(
        st.just("spend_settle"),
        st.lists(st.sampled_from(SPEND_KEYS), min_size=1, max_size=2, unique=True),
        st.sampled_from(LEASES),
        quarters,
    ),
    st.tuples(st.just("spend_state"), st.sampled_from(SPEND_KEYS)),
    st.tuples(st.just("spend_seed"), st.sampled_from(SPEND_KEYS), quarters),
    st.tuples(st.just("once"), st.sampled_from(["x", "y"])),
)
request_window = st.builds(
    lambda key, limit, cost: WindowCheck(key, limit, WINDOWS[key], cost),
    st.sampled_from(["w60", "w60", "w30"]),
    st.integers(min_value=1, max_value=6),
    st.sampled_from([1.0, 1.0, 0.0]),
)
"""What a model request checks: requests (cost 1) and tokens (cost 0, charged later by finish)."""
request_spend = st.builds(
    lambda key, limit: SpendCheck(key, limit, T0 + 86_400),
    st.sampled_from(SPEND_KEYS),
    st.sampled_from([1.0, 2.0, 5.0]),
)
"""Budgets small enough that requests in flight fill them."""
admit_op = st.tuples(
    st.just("admit"),
    st.lists(slot_check, min_size=1, max_size=2).map(_unique).map(tuple) | st.just(()),
    st.lists(request_window, min_size=1, max_size=2).map(_unique) | st.just([]),
    st.lists(request_spend, min_size=1, max_size=2).map(_unique).map(tuple) | st.just(()),
    st.sampled_from(LEASES),
    quarters,
    st.sampled_from([5.0, 30.0]),
)
finish_op = st.tuples(
    st.just("finish"),
    st.sampled_from([[], ["sa"], ["sa", "sb"]]),
    st.sampled_from([[], ["w60"]]),
    st.integers(0, 4).map(float),
    st.lists(st.sampled_from(SPEND_KEYS), max_size=2, unique=True),
    st.sampled_from(LEASES),
    quarters,
)
reads = st.one_of(
    st.tuples(st.just("slots_used"), st.sampled_from(["sa", "sb"])),
    st.tuples(st.just("window_used"), st.sampled_from(sorted(WINDOWS))),
    st.tuples(st.just("spend_state"), st.sampled_from(SPEND_KEYS)),
)
request_ops = st.sampled_from([admit_op] * 5 + [finish_op] * 2 + [reads] * 2 + [slot_ops, spend_ops]).flatmap(
    lambda ops: ops
)
"""Mostly a model request's calls, with the reads that show what they left."""
QUICK = st.sampled_from([0.0, 0.0, 0.25, 1.0, 5.0, 30.0])
"""Requests come close together (leases of 5 and 30 s are still held), sometimes apart."""
DELAYS = st.sampled_from([0.0, 0.25, 1.0, 5.0, 25.0, 30.0, 60.0])
"""Steps of time: many land exactly where a slice or a lease expires (the boundaries that matter)."""


def sequences(
    ops: st.SearchStrategy[tuple[Any, ...]], delays: st.SearchStrategy[float] = DELAYS, min_size: int = 4
) -> st.SearchStrategy[list[tuple[float, Any]]]:
    return st.lists(st.tuples(delays, ops), min_size=min_size, max_size=30)


async def _apply(store: CounterStore, op: tuple[Any, ...], now: float) -> object:
    name, *args = op
    if name == "window_hit":
        return await store.window_hit(args[0], now)
    if name == "window_add":
        await store.window_add(args[0], args[1], WINDOWS[args[0]], now)
        return None
    if name == "window_used":
        return await store.window_used(args[0], WINDOWS[args[0]], now)
    if name == "slots_acquire":
        return await store.slots_acquire(args[0], args[1], now, args[2])
    if name == "slots_release":
        await store.slots_release(args[0], args[1])
        return None
    if name == "spend_reserve":
        return await store.spend_reserve(args[0], args[1], args[2], now, args[3])
    if name == "spend_settle":
        return await store.spend_settle(args[0], args[1], args[2], now)
    if name == "spend_state":
        return await store.spend_state(args[0], now)
    if name == "spend_seed":
        await store.spend_seed(args[0], args[1], T0 + 86_400)
        return None
    if name == "admit":
        slots, windows, spend, lease, amount, ttl = args
        return await store.admit(
            lease, now, slots=slots, slot_ttl=ttl, windows=windows, spend=spend, amount=amount, spend_ttl=ttl
        )
    if name == "finish":
        slot_keys, token_keys, tokens, spend_keys, lease, actual = args
        return await store.finish(
            lease,
            now,
            slot_keys=slot_keys,
            token_keys=token_keys,
            tokens=tokens,
            window=WINDOWS["w60"],
            spend_keys=spend_keys,
            actual=actual,
        )
    if name == "slots_used":
        return await store.slots_used(args[0], now)
    assert name == "once"
    return await store.once(args[0], T0 + 86_400)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[tuple[str, str]]:
    with scratch_prefix() as found:
        yield found


def _compare(url: str, root: str, steps: list[tuple[float, Any]]) -> None:
    prefix = f"{root}{secrets.token_hex(4)}:"

    async def run() -> None:
        memory = MemoryCounterStore()
        redis_store = redis_counter_store(url, prefix, "resp")  # the gateway's client for plain redis://
        now = T0
        try:
            for number, (step, op) in enumerate(steps):
                now += step
                expected = await _apply(memory, op, now)
                got = await _apply(redis_store, op, now)
                assert got == expected, f"step {number} at +{now - T0:g} s: {op}"
        finally:
            await redis_store.aclose()

    try:
        asyncio.run(run())
    finally:
        delete_prefix(url, prefix)


@settings(max_examples=60)
@given(steps=sequences(window_ops))
def test_windows_answer_as_in_memory(redis_server: tuple[str, str], steps: list[tuple[float, Any]]) -> None:
    _compare(*redis_server, steps)


@settings(max_examples=100)
@given(steps=sequences(slot_ops))
def test_slots_answer_as_in_memory(redis_server: tuple[str, str], steps: list[tuple[float, Any]]) -> None:
    _compare(*redis_server, steps)


@settings(max_examples=60)
@given(steps=sequences(spend_ops))
def test_spend_answers_as_in_memory(redis_server: tuple[str, str], steps: list[tuple[float, Any]]) -> None:
    _compare(*redis_server, steps)


@settings(max_examples=100)
@given(steps=sequences(request_ops, QUICK, min_size=10))
def test_a_requests_calls_answer_as_in_memory(
    redis_server: tuple[str, str], steps: list[tuple[float, Any]]
) -> None:
    _compare(*redis_server, steps)
