"""One way to open the shared Redis: from the policy's ``counters`` section, with short timeouts.

Counters, the change signals between replicas and shared session state all talk to the
same Redis. Every operation is bounded by ``counters.timeout_ms``, so an unreachable
Redis is an error the caller handles at once (fail open or closed by policy), never a
hang; the client reconnects by itself when Redis returns.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from policies.counters_settings import CountersSettings


def open_redis(settings: CountersSettings) -> Redis:
    """A client for ``settings.url`` (no I/O happens until the first command)."""
    if settings.backend != "redis" or settings.url is None:
        raise ValueError("counters.backend is not 'redis'")
    timeout = settings.timeout_ms / 1000
    return Redis.from_url(
        settings.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=timeout, base=timeout / 8), retries=1),
        decode_responses=False,
    )


def redis_key(settings: CountersSettings, *parts: str) -> str:
    """A key or channel name under this gateway's prefix."""
    return settings.key_prefix + ":".join(parts)
