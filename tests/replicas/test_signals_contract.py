"""One contract for every `ChangeBus`: the in-process bus and Redis pub/sub behave the same to a
subscriber (a change reaches the other processes, never the sender; a failing or slow handler
holds nothing up; a closed bus publishes nothing)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway_common.signals import RESYNC, Change, ChangeBus, MemoryBroker, MemoryBus
from gateway_common.signals.redis_bus import RedisBus
from policies.counters_settings import CountersSettings
from tests.redis_support import scratch_prefix

pytestmark = pytest.mark.anyio

Pair = Callable[[], Awaitable[tuple[ChangeBus, ChangeBus]]]


@pytest.fixture(params=["memory", "redis"])
async def make_pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    made: list[ChangeBus] = []
    with contextlib.ExitStack() as cleanup:
        if request.param == "memory":
            broker = MemoryBroker()

            async def pair() -> tuple[ChangeBus, ChangeBus]:
                buses: tuple[ChangeBus, ChangeBus] = (MemoryBus(broker), MemoryBus(broker))
                made.extend(buses)
                return buses

        else:
            url, prefix = cleanup.enter_context(scratch_prefix())
            settings = CountersSettings(backend="redis", url=url, key_prefix=prefix)

            async def pair() -> tuple[ChangeBus, ChangeBus]:
                buses = (RedisBus(settings), RedisBus(settings))
                made.extend(buses)
                for bus in buses:
                    await bus.start()
                    assert await bus.wait_connected(5), bus.health()
                return buses

        yield pair
        for bus in made:
            await bus.aclose()


def collect(bus: ChangeBus, *, skip_resync: bool = True) -> asyncio.Queue[Change]:
    heard: asyncio.Queue[Change] = asyncio.Queue()

    async def handler(change: Change) -> None:
        if not (skip_resync and change.kind == RESYNC):
            heard.put_nowait(change)

    bus.subscribe(handler)
    return heard


async def next_change(queue: asyncio.Queue[Change], timeout: float = 2.0) -> Change:
    return await asyncio.wait_for(queue.get(), timeout)


async def test_a_change_reaches_the_other_process_and_not_the_sender(make_pair: Pair) -> None:
    one, two = await make_pair()
    heard_one, heard_two = collect(one), collect(two)
    assert await one.publish("keys", {"version": 7})
    change = await next_change(heard_two)
    assert (change.kind, dict(change.payload), change.origin) == ("keys", {"version": 7}, one.origin)
    assert await two.publish("policy", {"sha256": "ab"})
    assert (await next_change(heard_one)).kind == "policy"
    await asyncio.sleep(0.05)
    assert heard_one.empty() and heard_two.empty()  # neither heard its own


async def test_changes_arrive_in_order_with_their_payloads(make_pair: Pair) -> None:
    one, two = await make_pair()
    heard = collect(two)
    for n in range(20):
        await one.publish("keys", {"version": n, "nested": {"list": [n, "x"]}})
    received = [await next_change(heard) for _ in range(20)]
    assert [dict(c.payload) for c in received] == [
        {"version": n, "nested": {"list": [n, "x"]}} for n in range(20)
    ]


async def test_a_failing_or_slow_handler_holds_nothing_up(make_pair: Pair) -> None:
    one, two = await make_pair()
    release = asyncio.Event()

    async def failing(change: Change) -> None:
        raise RuntimeError("handler bug")

    async def slow(change: Change) -> None:
        if change.kind == "first":
            await release.wait()

    two.subscribe(failing)
    two.subscribe(slow)
    heard = collect(two)
    await one.publish("first", {})
    await one.publish("second", {})
    assert [(await next_change(heard)).kind for _ in range(2)] == ["first", "second"]
    release.set()


async def test_unsubscribed_handlers_hear_nothing(make_pair: Pair) -> None:
    one, two = await make_pair()
    late: list[Change] = []

    async def handler(change: Change) -> None:
        late.append(change)

    stop = two.subscribe(handler)
    stop()
    heard = collect(two)
    await one.publish("keys", {})
    await next_change(heard)
    assert late == []


async def test_a_closed_bus_publishes_nothing_and_says_so(make_pair: Pair) -> None:
    one, two = await make_pair()
    heard = collect(two)
    await one.aclose()
    assert await one.publish("keys", {}) is False
    assert one.state == "closed"
    await asyncio.sleep(0.1)
    assert heard.empty()
    assert two.health()["state"] in ("local", "connected")


async def test_health_names_the_backend(make_pair: Pair) -> None:
    one, _ = await make_pair()
    health: dict[str, Any] = one.health()
    assert health["backend"] in ("memory", "redis")
    assert health["state"] == ("local" if health["backend"] == "memory" else "connected")
