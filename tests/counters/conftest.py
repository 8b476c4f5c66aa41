"""A counter store per test: memory, or Redis under a prefix of the test's own (``store`` fixture).

Redis runs the scripts through either client (`RespScripts` or redis-py's own): every Redis test
runs with both, so both pass one contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway_common.counters.redis_store import RedisCounterStore
from gateway_common.counters.resp_scripts import RespScripts
from policies.counters import CounterStore
from policies.memory_counters import MemoryCounterStore
from tests.redis_support import scratch_prefix


def redis_counter_store(url: str, prefix: str, scripts: str) -> RedisCounterStore:
    """A Redis store whose scripts run through ``scripts``: ``"resp"`` or ``"redis-py"``."""
    resp = RespScripts.from_url(url, 2.0) if scripts == "resp" else None
    if scripts == "resp":
        assert resp is not None, f"RespScripts does not speak {url}"
    return RedisCounterStore(Redis.from_url(url), prefix, resp)


@pytest.fixture(params=["resp", "redis-py"])
async def redis_store(request: pytest.FixtureRequest) -> AsyncIterator[RedisCounterStore]:
    with scratch_prefix() as (url, prefix):
        store = redis_counter_store(url, prefix, request.param)
        try:
            yield store
        finally:
            await store.aclose()


@pytest.fixture(params=["memory", "redis:resp", "redis:redis-py"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounterStore()
        return
    with scratch_prefix() as (url, prefix):
        redis_store = redis_counter_store(url, prefix, request.param.removeprefix("redis:"))
        try:
            yield redis_store
        finally:
            await redis_store.aclose()


@pytest.fixture(params=["resp", "redis-py"])
def scripts(request: pytest.FixtureRequest) -> str:
    """Which client runs the Redis store's scripts, for tests that build the store themselves."""
    return str(request.param)
