"""Which resources a 2025-11-25 session subscribed to, where every replica can read it.

A session id is signed and carries what another replica needs to rebuild the session (see
`session_ids`), but not its ``resources/subscribe`` subscriptions, which come and go over its
life. So each subscription is also written here; a replica that rebuilds a session (its client
came back there, e.g. its GET stream reconnected through the load balancer) reads them and
subscribes that session again, so ``notifications/resources/updated`` keeps reaching it.

`LocalLedger` is for one process (nothing to share: a session only ever lives where it opened).
`RedisLedger` keeps a set per session in the counters' Redis, each with a TTL renewed as it is
used. The ledger is best effort by design: a Redis that does not answer within ``timeout`` costs
the subscribing request nothing but the record (logged), and a session rebuilt meanwhile starts
without its subscriptions, as before this ledger existed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("mcp_gateway")

T = TypeVar("T")
KEEP_SECONDS = 7 * 86_400
"""How long a session's record outlives its last use (a session idle that long has ended anyway)."""


RESYNC_SECONDS = 60.0
"""How often every session on a replica reads its subscriptions from a shared ledger again (at its
next request): the change bus is at most once, so a replica that missed a change still holding a
copy of the session serves that copy's subscriptions for at most this long."""


class SubscriptionLedger(Protocol):
    shared: bool
    """Whether other replicas read and write the same records (so a copy here may be out of date)."""

    async def add(self, session_id: str, uri: str) -> None: ...

    async def remove(self, session_id: str, uri: str) -> None: ...

    async def uris(self, session_id: str) -> list[str] | None:
        """The session's subscriptions; None when they cannot be known (then nothing is changed)."""
        ...

    async def forget(self, session_id: str) -> None: ...


async def resync_periodically(resync: Callable[[], object], every: float) -> None:
    """Call ``resync`` (`SessionStore.resync_subscriptions`: every session reads its subscriptions
    again at its next request) every ``every`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(every)
        resync()


class LocalLedger:
    """One process: a session lives only where it opened, so there is nothing to record."""

    shared = False

    async def add(self, session_id: str, uri: str) -> None:
        return None

    async def remove(self, session_id: str, uri: str) -> None:
        return None

    async def uris(self, session_id: str) -> list[str] | None:
        return None

    async def forget(self, session_id: str) -> None:
        return None


class RedisLedger:
    """A Redis set per session (``<prefix>subs:<session id>``), every call bounded by ``timeout``."""

    shared = True

    def __init__(self, client: Redis, prefix: str, timeout: float, keep: int = KEEP_SECONDS) -> None:
        self.client = client
        self.prefix = prefix + "subs:"
        self.timeout = timeout
        self.keep = keep
        self.failures = 0
        self._warned = False

    def _key(self, session_id: str) -> str:
        return self.prefix + session_id

    async def add(self, session_id: str, uri: str) -> None:
        await self._run("record a subscription", self._add(self._key(session_id), uri))

    async def remove(self, session_id: str, uri: str) -> None:
        await self._run("drop a subscription", self.client.srem(self._key(session_id), uri))

    async def uris(self, session_id: str) -> list[str] | None:
        key = self._key(session_id)
        found = await self._run("read a session's subscriptions", self._members(key))
        return None if found is None else sorted(found)

    async def forget(self, session_id: str) -> None:
        await self._run("forget a session's subscriptions", self.client.delete(self._key(session_id)))

    async def _members(self, key: str) -> list[str]:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.smembers(key)
            pipe.expire(key, self.keep)
            members, _ = await pipe.execute()
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def _add(self, key: str, uri: str) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.sadd(key, uri)
            pipe.expire(key, self.keep)
            await pipe.execute()

    async def _run(self, what: str, call: Awaitable[T]) -> T | None:
        """``call``, bounded; None (logged, once per outage) when Redis does not answer in time."""
        try:
            async with asyncio.timeout(self.timeout):
                result = await call
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            if not self._warned:
                self._warned = True
                logger.warning(
                    "could not %s in Redis (%s): a session rebuilt on another replica meanwhile starts "
                    "without its resource subscriptions",
                    what,
                    type(exc).__name__,
                )
            return None
        if self._warned:
            self._warned = False
            logger.info("session subscriptions are recorded in Redis again")
        return result
