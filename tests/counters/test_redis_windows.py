"""A Redis window reads its running total, not its slices: what keeps a busy window cheap.

A one-minute window is 60 slices; a model request checks up to four windows. Redis's own
command statistics (on a server of the test's own, so nothing else counts) show the slices are
read only when one leaves the window or a refusal asks when to retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway_common.counters.redis_store import RedisCounterStore
from policies.counters import WindowCheck, WindowDenial
from policies.memory_counters import MemoryCounterStore
from tests.counters.conftest import redis_counter_store
from tests.redis_support import OwnRedis, own_redis_server

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0
MINUTE = 60.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis_server(tmp_path) as own:
        yield own


def command_calls(server: OwnRedis) -> dict[str, int]:
    """Calls per command since the last reset (the scripts' own calls are counted too)."""
    with redis.Redis(port=server.port) as client:
        stats = client.info("commandstats")
        client.config_resetstat()
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


def slice_reads(server: OwnRedis) -> int:
    """HGETALL calls since the last reset (how a window's slices are read)."""
    return command_calls(server).get("hgetall", 0)


async def test_a_full_window_is_checked_without_reading_its_slices(server: OwnRedis, scripts: str) -> None:
    store = redis_counter_store(server.url, "mcpgw-test:", scripts)
    memory = MemoryCounterStore()
    check = [WindowCheck("rl:busy", 100, MINUTE)]
    try:
        for second in range(60):  # one hit in each of the window's 60 slices
            for counter in (store, memory):
                assert await counter.window_hit(check, T0 + second) is None
        slice_reads(server)
        for n in range(20):  # all within the last slice: nothing has left the window
            now = T0 + 59.0 + n / 40
            assert await store.window_hit(check, now) == await memory.window_hit(check, now) is None
        assert slice_reads(server) == 0
        # The first slice leaves at T0 + 60: one scan drops it, and the next calls are reads again.
        for now in (T0 + 60.0, T0 + 60.5):
            assert await store.window_used("rl:busy", MINUTE, now) == await memory.window_used(
                "rl:busy", MINUTE, now
            )
        assert await store.window_used("rl:busy", MINUTE, T0 + 60.5) == 79.0
        assert slice_reads(server) == 1
        # A refusal says when to retry: that reads the slices.
        full = [WindowCheck("rl:busy", 79, MINUTE)]
        denial = await store.window_hit(full, T0 + 60.5)
        assert denial == await memory.window_hit(full, T0 + 60.5)
        assert denial == WindowDenial(0, 79.0, 0.5)
        assert slice_reads(server) == 1
    finally:
        await store.aclose()


async def test_windows_of_the_earlier_format_are_left_alone(server: OwnRedis, scripts: str) -> None:
    """A gateway of the earlier format (no running total) shares Redis during a rolling upgrade:
    its windows are under another key, so neither misreads the other's."""
    store: RedisCounterStore = redis_counter_store(server.url, "mcpgw-test:", scripts)
    try:
        with redis.Redis(port=server.port) as client:
            client.hset("mcpgw-test:c:rl:old", mapping={repr(T0): "3"})  # as the earlier format wrote it
        assert await store.window_hit([WindowCheck("rl:old", 5, MINUTE)], T0 + 1) is None
        assert await store.window_used("rl:old", MINUTE, T0 + 1) == 1.0
        with redis.Redis(port=server.port) as client:
            assert client.hgetall("mcpgw-test:c:rl:old") == {repr(T0).encode(): b"3"}
    finally:
        await store.aclose()


async def test_a_hit_is_one_read_and_one_write_and_a_new_slice_sets_the_ttl(
    server: OwnRedis, scripts: str
) -> None:
    """What a check and its charge cost Redis: the check's HMGET also reads the slice the charge
    writes, and the TTL is set only when a slice is new (it already covers that slice's life)."""
    store = redis_counter_store(server.url, "mcpgw-test:", scripts)
    check = [WindowCheck("rl:calls", 100, MINUTE)]
    try:
        assert await store.window_hit(check, T0) is None
        command_calls(server)
        assert await store.window_hit(check, T0 + 0.5) is None  # the same slice (one second wide)
        calls = command_calls(server)
        assert (calls.get("hmget"), calls.get("hset")) == (1, 1), calls
        assert "pttl" not in calls and "pexpire" not in calls, calls
        assert await store.window_hit(check, T0 + 1.5) is None  # a new slice
        calls = command_calls(server)
        assert (calls.get("hmget"), calls.get("hset"), calls.get("pttl")) == (1, 1, 1), calls
        with redis.Redis(port=server.port) as client:
            assert 60_000 < client.pttl(store.window_prefix + "rl:calls") <= 61_000
    finally:
        await store.aclose()
