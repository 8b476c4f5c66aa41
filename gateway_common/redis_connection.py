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


def open_redis(settings: CountersSettings, *, bounded_by_caller: bool = False) -> Redis:
    """A client for ``settings.url`` (no I/O happens until the first command).

    ``bounded_by_caller``: every command is bounded by the caller (the counter store's
    ``asyncio.timeout`` per operation), so the client sets no per-socket-operation timeout; with
    one, redis-py wraps each send in ``asyncio.wait_for`` (a task per command: about a fifth of
    a counter call's CPU). Connecting is bounded either way.
    """
    if settings.backend != "redis" or settings.url is None:
        raise ValueError("counters.backend is not 'redis'")
    timeout = settings.timeout_ms / 1000
    return Redis.from_url(
        settings.url,
        socket_timeout=None if bounded_by_caller else timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=timeout, base=timeout / 8), retries=1),
        decode_responses=False,
    )


def redis_key(settings: CountersSettings, *parts: str) -> str:
    """A key or channel name under this gateway's prefix."""
    return settings.key_prefix + ":".join(parts)
