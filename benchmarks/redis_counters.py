"""What the Redis counter store adds per request, against the in-memory store (benchmark, not a test).

Runs the counter work of one request as the gateway does it, through the same guarded store
the gateway builds (`gateway_app.counter_store.build_counter_stores`):

- tools/call with ``tool_calls_per_minute`` on the key and its team: one ``window_hit``;
- /v1/messages with rpm, tpm, concurrency (key and team) and a team budget, two ways:
  ``six calls`` as the gateway made them before `policies.admission` (``slots_acquire``,
  ``window_hit``, ``spend_reserve`` before forwarding; ``slots_release``, ``window_add``,
  ``spend_settle`` after), and ``admit+finish`` as it makes them now (one call each side);
- the same /v1/messages work through the policy layer the exchange calls (rate plan and budget
  book from a real policy): ``RateLimiter``/``BudgetBook`` one by one, then `policies.admission`.

Each against memory, Redis with the scripts run by `RespScripts` (what the gateway uses for a
plain redis:// URL) and Redis with them run by redis-py. Reports p50/p99 wall time and CPU time
per request (this process: the gateway's share; Redis's own CPU is another process), on uvloop,
and for Redis what Redis itself spent (``INFO commandstats``, reset before each measurement):
microseconds per request and the commands the scripts ran per request (``redis.call``s). Those
are exact only on a Redis nobody else uses meanwhile (``--url`` of a private redis-server).
``python -m benchmarks.redis_counters --url redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from gateway_app.counter_store import build_counter_stores
from gateway_common.counters.guarded import GuardedCounterStore
from gateway_common.counters.health import StoreHealth
from gateway_common.counters.redis_store import RedisCounterStore
from gateway_common.redis_connection import open_redis
from policies import admission, load_policy_text
from policies.budgeting import BudgetBlock, BudgetBook, BudgetScopes
from policies.counters import CounterStore, SlotCheck, SpendCheck, WindowCheck
from policies.counters_settings import CountersSettings
from policies.keys import Principal
from policies.ratelimit import RateLimiter, build_rate_plan

# Tuples, as the rate and budget plans hold them (built once per policy, not per request).
TOOL = (WindowCheck("rl:key:k:tool_calls_per_minute", 1e9, 60.0), WindowCheck("rl:team:t:tcpm", 1e9, 60.0))
WINDOWS = (WindowCheck("rl:key:k:rpm", 1e9, 60.0), WindowCheck("rl:key:k:tpm", 1e12, 60.0, 0.0))
SLOTS = (SlotCheck("rl:key:k:concurrent_requests", 1000),)
SPEND = (SpendCheck("budget:team:t:daily:x", 1e12, time.time() + 86_400),)
SLOT_KEYS, TOKEN_KEYS, SPEND_KEYS = (SLOTS[0].key,), (WINDOWS[1].key,), (SPEND[0].key,)
POLICY = """
teams:
  - {name: t, rate_limit: {requests_per_minute: 1000000000, concurrent_requests: 100000}}
virtual_keys:
  - id: k
    team: t
    secret_sha256: "0000000000000000000000000000000000000000000000000000000000000000"
    rate_limit: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000000, concurrent_requests: 1000}
budgets:
  teams: [{name: t, daily_limit_usd: 1000000000000}]
"""
PRINCIPAL = Principal("k", "k", "t", "file")

Work = Callable[[CounterStore, int], Awaitable[None]]


async def tool_call(store: CounterStore, n: int) -> None:
    await store.window_hit(TOOL, time.time())


async def six_calls(store: CounterStore, n: int) -> None:
    lease, now = f"req{n}", time.time()
    await store.slots_acquire(SLOTS, lease, now, 3600.0)
    await store.window_hit(WINDOWS, now)
    await store.spend_reserve(SPEND, lease, 0.05, now, 3600.0)
    await store.slots_release(SLOT_KEYS, lease)
    await store.window_add(WINDOWS[1].key, 1200.0, 60.0, now)
    await store.spend_settle(SPEND_KEYS, lease, 0.01, now)


async def two_calls(store: CounterStore, n: int) -> None:
    lease, now = f"req{n}", time.time()
    await store.admit(
        lease, now, slots=SLOTS, slot_ttl=3600.0, windows=WINDOWS, spend=SPEND, amount=0.05, spend_ttl=3600.0
    )
    await store.finish(
        lease,
        now,
        slot_keys=[SLOTS[0].key],
        token_keys=[WINDOWS[1].key],
        tokens=1200.0,
        spend_keys=[SPEND[0].key],
        actual=0.01,
    )


def policy_work(combined: bool) -> Work:
    """A request through `RateLimiter` and `BudgetBook` (as the exchange did) or `policies.admission`."""
    policy = load_policy_text(POLICY).policy
    plan = build_rate_plan(policy, PRINCIPAL)
    scopes = BudgetScopes(policy).caller_scopes(PRINCIPAL)
    parts: dict[int, tuple[RateLimiter, BudgetBook]] = {}

    async def work(store: CounterStore, n: int) -> None:
        found = parts.get(id(store))
        if found is None:
            found = parts[id(store)] = (RateLimiter(store, time.time), BudgetBook(store, time.time))
        limiter, book = found
        lease = f"p{n}"
        if combined:
            admitted = await admission.admit(limiter, book, plan, scopes, 0.05, lease)
            assert isinstance(admitted, admission.Admitted)
            reservations = [admitted.reservation] if admitted.reservation is not None else []
            await admission.finish(limiter, book, admitted.ticket, 1200, reservations, 0.01)
            return
        decision = await limiter.acquire_request(plan, lease)
        assert decision.ticket is not None
        reserved = await book.reserve(scopes, 0.05, lease)
        assert not isinstance(reserved, BudgetBlock)
        await limiter.finish(decision.ticket, 1200)
        await book.settle(reserved, 0.01)

    return work


async def redis_spent(client: Any, count: int) -> str:
    """What Redis spent per request since the last reset: its time and the scripts' own commands."""
    stats = await client.info("commandstats")
    scripts = ("cmdstat_evalsha", "cmdstat_eval")
    usec = sum(float(stats[name]["usec"]) for name in scripts if name in stats)
    inner = sum(
        int(stat["calls"])
        for name, stat in stats.items()
        if name not in scripts and name.removeprefix("cmdstat_") not in _OWN_COMMANDS
    )
    return f"  Redis {usec / count:.1f} us, {inner / count:.1f} redis.calls per request"


_OWN_COMMANDS = frozenset(
    {"info", "config|resetstat", "config", "ping", "script", "scan", "del", "hello", "select"}
)
"""Commands this benchmark (or a client's set-up) sends itself, not the scripts."""


async def measure(
    store: CounterStore, work: Work, count: int, redis_client: Any = None
) -> tuple[float, float, float, str]:
    for n in range(200):  # warm up (connections, script loads)
        await work(store, n)
    if redis_client is not None:
        await redis_client.config_resetstat()
    times = []
    cpu = time.process_time()
    for n in range(count):
        began = time.perf_counter()
        await work(store, n)
        times.append(time.perf_counter() - began)
    cpu_per = (time.process_time() - cpu) / count
    times.sort()
    spent = await redis_spent(redis_client, count) if redis_client is not None else ""
    return statistics.median(times), times[int(len(times) * 0.99)], cpu_per, spent


async def main(url: str, count: int) -> None:
    memory = build_counter_stores(CountersSettings())
    prefix = f"bench-{secrets.token_hex(4)}:"
    settings = CountersSettings(backend="redis", url=url, key_prefix=prefix)
    redis = build_counter_stores(settings)  # scripts through `RespScripts` for a plain redis:// URL
    # The same guarded store with the scripts run by redis-py, as before `RespScripts`.
    by_redis_py = RedisCounterStore(open_redis(settings, bounded_by_caller=True), prefix)
    health = StoreHealth("redis")
    redis_py = GuardedCounterStore(by_redis_py, health, settings.on_unavailable, settings.timeout_ms / 1000)
    works: list[tuple[str, Work]] = [
        ("tools/call", tool_call),
        ("msgs 6 calls", six_calls),
        ("msgs 2 calls", two_calls),
        ("msgs policy 6", policy_work(combined=False)),
        ("msgs policy 2", policy_work(combined=True)),
    ]
    stores: list[tuple[str, CounterStore]] = [
        ("memory", memory.model_api),
        ("redis", redis.model_api),
        ("redis-py", redis_py),
    ]
    try:
        print(f"{'work':<14} {'store':<8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10}")
        for name, work in works:
            base = None
            for label, store in stores:
                client = None if label == "memory" else redis.redis.client if redis.redis else None
                p50, p99, cpu, spent = await measure(store, work, count, client)
                extra = ""
                if base is not None:
                    extra = f"  (+{(p50 - base[0]) * 1000:.3f} ms p50, +{(p99 - base[1]) * 1000:.3f} ms p99)"
                else:
                    base = (p50, p99)
                figures = f"{p50 * 1000:8.3f} {p99 * 1000:8.3f} {cpu * 1000:10.3f}"
                print(f"{name:<14} {label:<8} {figures}{extra}{spent}")
    finally:
        assert redis.redis is not None
        async for key in redis.redis.client.scan_iter(match=prefix + "*"):
            await redis.redis.client.delete(key)
        await redis.aclose()
        await by_redis_py.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    uvloop.run(main(args.url, args.requests))  # the loop `serve` runs on
