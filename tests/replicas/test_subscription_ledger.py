"""`RedisLedger`: a session's subscriptions in Redis (add, remove, read, forget, each key with a
TTL renewed on use), and best effort when Redis is gone: every call bounded, nothing raised,
logged once per outage, and recording again once Redis is back. `LocalLedger` shares nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from mcp_gateway.server.subscription_ledger import LocalLedger, RedisLedger
from tests.redis_support import OwnRedis, own_redis_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis_server(tmp_path) as own:
        yield own


async def test_a_sessions_subscriptions_are_kept_read_and_forgotten(server: OwnRedis) -> None:
    client = Redis.from_url(server.url)
    ledger = RedisLedger(client, "t:", timeout=1.0, keep=600)
    try:
        await ledger.add("s1", "mcpgw://alpha/res://alpha/readme")
        await ledger.add("s1", "mcpgw://beta/b")
        await ledger.add("s2", "mcpgw://beta/b")
        assert await ledger.uris("s1") == ["mcpgw://alpha/res://alpha/readme", "mcpgw://beta/b"]
        assert 590 < await client.ttl("t:subs:s1") <= 600
        await ledger.remove("s1", "mcpgw://beta/b")
        assert await ledger.uris("s1") == ["mcpgw://alpha/res://alpha/readme"]
        await ledger.forget("s1")
        assert await ledger.uris("s1") == [] and not await client.exists("t:subs:s1")
        assert await ledger.uris("s2") == ["mcpgw://beta/b"], "sessions are apart"
    finally:
        await client.aclose()


async def test_an_unreachable_redis_costs_a_bounded_wait_and_no_error(
    server: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    client = Redis.from_url(server.url, socket_connect_timeout=0.2)
    ledger = RedisLedger(client, "t:", timeout=0.3)
    caplog.set_level(logging.INFO, "mcp_gateway")
    try:
        await ledger.add("s1", "u1")
        server.stop()
        began = time.monotonic()
        await ledger.add("s1", "u2")
        assert await ledger.uris("s1") is None, "unknown, not empty: nothing is dropped on that"
        await ledger.remove("s1", "u1")
        await ledger.forget("s1")
        assert time.monotonic() - began < 3.0
        assert ledger.failures == 4
        warnings = [r for r in caplog.records if "resource subscriptions" in r.getMessage()]
        assert len(warnings) == 1, "logged once per outage"
        server.start()
        await ledger.add("s1", "u3")
        assert await ledger.uris("s1") == ["u3"], "the restarted server kept nothing (no persistence)"
        assert any("recorded in Redis again" in r.getMessage() for r in caplog.records)
    finally:
        await client.aclose()


async def test_one_process_records_nothing() -> None:
    ledger = LocalLedger()
    await ledger.add("s1", "u1")
    assert await ledger.uris("s1") is None
