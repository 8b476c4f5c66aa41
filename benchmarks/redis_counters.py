"""What the Redis counter store adds per request, against the in-memory store (benchmark, not a test).

Runs the counter work of one request as the gateway does it, through the same guarded store
the gateway builds (`gateway_app.counter_store.build_counter_stores`):

- tools/call with ``tool_calls_per_minute`` on the key and its team: one ``window_hit``;
- /v1/messages with rpm, tpm, concurrency and a team budget: ``slots_acquire``, ``window_hit``,
  ``spend_reserve`` before forwarding; ``slots_release``, ``window_add``, ``spend_settle`` after.

Reports p50/p99 wall time and CPU time per request (this process: the gateway's share; Redis's
own CPU is another process). ``python -m benchmarks.redis_counters --url redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

from gateway_app.counter_store import build_counter_stores
from policies.counters import CounterStore, SlotCheck, SpendCheck, WindowCheck
from policies.counters_settings import CountersSettings

TOOL = [WindowCheck("rl:key:k:tool_calls_per_minute", 1e9, 60.0), WindowCheck("rl:team:t:tcpm", 1e9, 60.0)]
WINDOWS = [WindowCheck("rl:key:k:rpm", 1e9, 60.0), WindowCheck("rl:key:k:tpm", 1e12, 60.0, 0.0)]
SLOTS = [SlotCheck("rl:key:k:concurrent_requests", 1000)]
SPEND = [SpendCheck("budget:team:t:daily:x", 1e12, time.time() + 86_400)]


async def tool_call(store: CounterStore, n: int) -> None:
    await store.window_hit(TOOL, time.time())


async def model_request(store: CounterStore, n: int) -> None:
    lease, now = f"req{n}", time.time()
    await store.slots_acquire(SLOTS, lease, now, 3600.0)
    await store.window_hit(WINDOWS, now)
    await store.spend_reserve(SPEND, lease, 0.05, now, 3600.0)
    await store.slots_release([SLOTS[0].key], lease)
    await store.window_add(WINDOWS[1].key, 1200.0, 60.0, now)
    await store.spend_settle([SPEND[0].key], lease, 0.01, now)


async def measure(
    store: CounterStore, work: Callable[[CounterStore, int], Awaitable[None]], count: int
) -> tuple[float, float, float]:
    for n in range(200):  # warm up (connections, script loads)
        await work(store, n)
    times = []
    cpu = time.process_time()
    for n in range(count):
        began = time.perf_counter()
        await work(store, n)
        times.append(time.perf_counter() - began)
    cpu_per = (time.process_time() - cpu) / count
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)], cpu_per


async def main(url: str, count: int) -> None:
    memory = build_counter_stores(CountersSettings())
    prefix = f"bench-{secrets.token_hex(4)}:"
    redis = build_counter_stores(CountersSettings(backend="redis", url=url, key_prefix=prefix))
    try:
        print(f"{'work':<14} {'store':<7} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10}")
        for name, work in (("tools/call", tool_call), ("/v1/messages", model_request)):
            base = None
            for label, stores in (("memory", memory), ("redis", redis)):
                p50, p99, cpu = await measure(stores.model_api, work, count)
                extra = ""
                if base is not None:
                    extra = f"  (+{(p50 - base[0]) * 1000:.3f} ms p50, +{(p99 - base[1]) * 1000:.3f} ms p99)"
                else:
                    base = (p50, p99)
                print(f"{name:<14} {label:<7} {p50 * 1000:8.3f} {p99 * 1000:8.3f} {cpu * 1000:10.3f}{extra}")
    finally:
        assert redis.redis is not None
        async for key in redis.redis.client.scan_iter(match=prefix + "*"):
            await redis.redis.client.delete(key)
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.requests))
