"""A counter store per test: memory, or Redis under a prefix of the test's own (``store`` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway_common.counters.redis_store import RedisCounterStore
from policies.counters import CounterStore, MemoryCounterStore
from tests.counters.redis_server import scratch_prefix


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisCounterStore]:
    with scratch_prefix() as (url, prefix):
        store = RedisCounterStore(Redis.from_url(url), prefix)
        try:
            yield store
        finally:
            await store.aclose()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounterStore()
        return
    with scratch_prefix() as (url, prefix):
        redis_store = RedisCounterStore(Redis.from_url(url), prefix)
        try:
            yield redis_store
        finally:
            await redis_store.aclose()
