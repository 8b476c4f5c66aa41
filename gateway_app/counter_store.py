"""Which counter store rate limits and budgets use, from the policy's ``counters`` section.

Memory (the default) is used as it is. Redis is wrapped in the failure policy
(`GuardedCounterStore`), once per front door: the model API refuses with a 503 and
``retry-after``, tools/call with its JSON-RPC rate-limit error, and both share one
availability (`StoreHealth`, shown by /readyz and /metrics) and one replay queue.

A Redis that cannot be reached at start is a warning, not a failure: the gateway
starts with the failure policy in force and counts as soon as Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gateway_common.counters.guarded import Concern, GuardedCounterStore
from gateway_common.counters.health import StoreHealth
from gateway_common.counters.redis_store import RedisCounterStore
from gateway_common.counters.resp_scripts import RespScripts
from gateway_common.redis_connection import open_redis
from llm_proxy.errors import GatewayUnavailable
from mcp_gateway.errors import RateLimited as ToolCallRefused
from policies.counters import CounterStore
from policies.counters_settings import CountersSettings
from policies.memory_counters import MemoryCounterStore
from policies.outcomes import Outcome

logger = logging.getLogger("mcp_gateway")


def _message(concern: Concern, retry_after: float) -> str:
    what = "budgets" if concern is Concern.BUDGETS else "rate limits"
    return (
        f"The gateway cannot reach its counter store, and its policy refuses requests whose {what} "
        f"it cannot check (counters.on_unavailable); retry in {max(1, round(retry_after))} s"
    )


def model_refusal(concern: Concern, retry_after: float) -> BaseException:
    outcome = Outcome.BUDGET_EXCEEDED if concern is Concern.BUDGETS else Outcome.RATE_LIMITED
    return GatewayUnavailable(
        _message(concern, retry_after), retry_after, blocked_by=f"counters:{concern}", outcome=outcome
    )


def tool_call_refusal(concern: Concern, retry_after: float) -> BaseException:
    return ToolCallRefused(_message(concern, retry_after), retry_after, f"counters:{concern}")


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    netloc = f"{user}{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class CounterStores:
    """The store each front door uses, their shared health, and how to check and close them."""

    settings: CountersSettings
    model_api: CounterStore
    tool_calls: CounterStore
    health: StoreHealth
    redis: RedisCounterStore | None = None
    guarded: GuardedCounterStore | None = None

    async def check_at_start(self) -> None:
        """Warn (and mark the store unavailable) when Redis does not answer; start anyway."""
        if self.redis is None:
            return
        try:
            async with asyncio.timeout(self.settings.timeout_ms / 1000):
                await self.redis.ping()
        except Exception as exc:  # any failure to reach it: the gateway starts with the failure policy
            self.health.failed("ping", exc)
            policy = self.settings.on_unavailable
            logger.warning(
                "counters: Redis at %s does not answer (%s); starting anyway: until it does, budgets "
                "%s and rate limits %s (counters.on_unavailable)",
                redacted(self.settings.url or ""),
                type(exc).__name__,
                "refuse model requests" if policy.budgets == "refuse" else "allow model requests uncounted",
                "refuse requests" if policy.rate_limits == "refuse" else "allow requests uncounted",
            )
        else:
            logger.info("counters: shared in Redis at %s", redacted(self.settings.url or ""))

    def detail(self) -> dict[str, object]:
        """/readyz's ``counters`` detail."""
        found: dict[str, object] = self.health.detail()
        if self.redis is not None:
            found["on_unavailable"] = self.settings.on_unavailable.model_dump(mode="json")
            if self.guarded is not None and self.guarded.pending:
                found["pending_replay"] = self.guarded.pending
        return found

    async def aclose(self) -> None:
        if self.guarded is not None:
            await self.guarded.aclose()
        if self.redis is not None:
            await self.redis.aclose()


def build_counter_stores(settings: CountersSettings, override: CounterStore | None = None) -> CounterStores:
    """The stores ``settings`` asks for (``override``, a test's store, replaces them unguarded)."""
    if override is not None or settings.backend == "memory":
        store = override or MemoryCounterStore()
        backend = "memory" if override is None else type(override).__name__
        return CounterStores(settings, store, store, StoreHealth(backend))
    # Every call is bounded by ``timeout``: the scripts run over `RespScripts` where the URL is one it
    # speaks (plain redis://), which bounds each call itself; else redis-py runs them, bounded by the
    # guarded store's timeout (and the ping at start by its own).
    assert settings.url is not None
    timeout = settings.timeout_ms / 1000
    scripts = RespScripts.from_url(settings.url, timeout)
    redis = RedisCounterStore(open_redis(settings, bounded_by_caller=True), settings.key_prefix, scripts)
    health = StoreHealth("redis")
    guarded = GuardedCounterStore(
        redis, health, settings.on_unavailable, timeout, bounded_inside=scripts is not None
    )
    return CounterStores(
        settings,
        model_api=guarded.with_refusal(model_refusal),
        tool_calls=guarded.with_refusal(tool_call_refusal),
        health=health,
        redis=redis,
        guarded=guarded,
    )


def check_counters(settings: CountersSettings, timeout: float) -> bool:
    """``check --connect``: can the gateway reach its counter store? Prints one line."""
    if settings.backend == "memory":
        print("  counters: in memory (one process)")
        return True

    async def ping() -> None:
        client = open_redis(settings)
        try:
            async with asyncio.timeout(timeout):
                await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:
        print(
            f"  counters: cannot reach Redis at {redacted(settings.url or '')} ({type(exc).__name__}: {exc})"
        )
        return False
    print(f"  counters: Redis at {redacted(settings.url or '')} answers")
    return True
