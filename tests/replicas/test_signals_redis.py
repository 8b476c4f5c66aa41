"""Redis pub/sub bus specifics: a resync on every (re)connect, an outage of a Redis server the test
runs itself (no exception, publish says False at once, reconnection with backoff, a change after the
recovery delivered), and messages on the channel that are not changes ignored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio

from gateway_common.signals import RESYNC, Change
from gateway_common.signals.redis_bus import RedisBus
from policies.counters_settings import CountersSettings
from tests.redis_support import OwnRedis, own_redis_server, scratch_prefix, unique_prefix

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis_server(tmp_path) as server:
        yield server


def collect(bus: RedisBus) -> asyncio.Queue[Change]:
    heard: asyncio.Queue[Change] = asyncio.Queue()

    async def handler(change: Change) -> None:
        heard.put_nowait(change)

    bus.subscribe(handler)
    return heard


async def kinds_until(queue: asyncio.Queue[Change], kind: str, timeout: float = 5.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while kind not in seen:
        seen.append((await asyncio.wait_for(queue.get(), max(0.01, deadline - time.monotonic()))).kind)
    return seen


async def test_an_outage_is_survived_and_followed_by_a_resync(own_redis: OwnRedis) -> None:
    settings = CountersSettings(
        backend="redis", url=own_redis.url, key_prefix=unique_prefix(), timeout_ms=200
    )
    one = RedisBus(settings, backoff_first=0.02, backoff_max=0.2)
    two = RedisBus(settings, backoff_first=0.02, backoff_max=0.2)
    heard = collect(two)
    try:
        for bus in (one, two):
            await bus.start()
            assert await bus.wait_connected(5)
        assert await kinds_until(heard, RESYNC) == [RESYNC]  # the first subscription resyncs too
        own_redis.stop()
        deadline = time.monotonic() + 5
        while two.state != "reconnecting":
            assert time.monotonic() < deadline, two.health()
            await asyncio.sleep(0.01)
        began = time.monotonic()
        assert await one.publish("keys", {"version": 1}) is False
        assert time.monotonic() - began < 1.5  # short timeouts: never a hang
        assert two.health()["state"] == "reconnecting" and "last_error" in two.health()
        await asyncio.sleep(0.5)  # a few failed attempts, with backoff
        own_redis.start()
        assert await two.wait_connected(5) and await one.wait_connected(5), (one.health(), two.health())
        assert await kinds_until(heard, RESYNC) == [RESYNC]  # missed messages: refresh everything
        assert await one.publish("keys", {"version": 2})
        change = await asyncio.wait_for(heard.get(), 2)
        assert (change.kind, change.payload) == ("keys", {"version": 2})
        assert two.connects == 2
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_bus_started_before_redis_connects_when_it_comes(tmp_path: Path) -> None:
    server = OwnRedis(tmp_path)
    settings = CountersSettings(backend="redis", url=server.url, key_prefix=unique_prefix(), timeout_ms=100)
    bus = RedisBus(settings, backoff_first=0.02, backoff_max=0.1)
    heard = collect(bus)
    try:
        await bus.start()
        assert not await bus.wait_connected(0.3)
        assert bus.state == "reconnecting"
        server.start()
        assert await bus.wait_connected(5)
        assert await kinds_until(heard, RESYNC) == [RESYNC]
    finally:
        await bus.aclose()
        server.stop()


async def test_messages_that_are_not_changes_are_ignored() -> None:
    with scratch_prefix() as (url, prefix):
        settings = CountersSettings(backend="redis", url=url, key_prefix=prefix)
        bus, other = RedisBus(settings), RedisBus(settings)
        heard = collect(bus)
        raw = redis.asyncio.Redis.from_url(url)
        try:
            for b in (bus, other):
                await b.start()
                assert await b.wait_connected(5)
            await kinds_until(heard, RESYNC)
            for junk in (
                b"not json",
                b"[1,2]",
                b'{"kind": 1}',
                b'{"kind":"resync","origin":"x","payload":{}}',
                b"x" * 70_000,
            ):
                await raw.publish(bus.channel, junk)
            await other.publish("keys", {"version": 3})
            change = await asyncio.wait_for(heard.get(), 2)
            assert (change.kind, change.payload) == ("keys", {"version": 3})
            assert bus.state == "connected"
        finally:
            await raw.aclose()
            await bus.aclose()
            await other.aclose()
