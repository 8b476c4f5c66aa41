"""`RedisCounterStore`: the `CounterStore` every replica and worker shares, one Lua script per method.

Each method is one ``EVALSHA`` of a script in `scripts` (loaded once per connection
with ``SCRIPT LOAD`` by redis-py's `register_script`, reloaded by itself after a
Redis restart), so every check-and-charge is atomic across replicas: a 10 rpm key
gets 10 requests whichever replicas serve them, and a budget is overshot by at most
the one request admitted last. A single Redis (or a primary with replicas) is
assumed: one call may name several keys, which Redis Cluster would refuse.

The scripts run through redis-py's ``register_script``, or through ``scripts`` (a
`resp_scripts.RespScripts`, about a third of redis-py's CPU per call) when one is given.
This class only talks to Redis; errors and timeouts propagate. What a request
gets while Redis is unreachable is `guarded.GuardedCounterStore`'s business.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis

from gateway_common.counters import scripts
from gateway_common.counters.resp_scripts import RespScripts
from policies.counters import (
    WINDOW_SLICES,
    Denial,
    SlotCheck,
    SlotDenial,
    SpendCheck,
    SpendDenial,
    SpendState,
    WindowCheck,
    WindowDenial,
)

KEEP_MARGIN_MS = 1000
"""Windows and slot sets outlive their last write by their length plus this."""
SETTLE_KEEP = 40 * 86_400.0
"""A counter first seen by a settlement is kept this long (as in memory)."""
CACHE_SIZE = 4096
"""Encoded plans kept (`RedisCounterStore._encoded`)."""
_Check = TypeVar("_Check", SlotCheck, WindowCheck, SpendCheck)


def _slice(window: float, now: float) -> str:
    """The hash field of the slice containing ``now`` (the same arithmetic as the memory store)."""
    width = window / WINDOW_SLICES
    return repr(now - (now % width))


def _ttl_ms(seconds: float) -> int:
    return math.ceil(seconds * 1000) + KEEP_MARGIN_MS


def _slot_numbers(check: SlotCheck) -> str:
    return repr(check.limit)


def _window_numbers(check: WindowCheck) -> str:
    return f"{check.limit!r} {check.window!r} {check.cost!r} {_ttl_ms(check.window)}"


def _spend_numbers(check: SpendCheck) -> str:
    return f"{check.limit!r} {check.expires_at!r}"


def _state(reply: Sequence[bytes | int]) -> SpendState:
    return SpendState(float(reply[0]), float(reply[1]), int(reply[2]))


class RedisCounterStore:
    """A `policies.counters.CounterStore` in Redis under ``prefix`` (e.g. ``mcpgw:``)."""

    def __init__(self, client: Redis, prefix: str, scripts_client: RespScripts | None = None) -> None:
        self.client = client
        self.scripts_client = scripts_client
        self.prefix = prefix + "c:"
        self.window_prefix = self.prefix + "w2:"
        """Windows live apart: their hashes keep a running total since this format (``w2``), which a
        gateway of the earlier format would misread; during a rolling upgrade each format counts its
        own requests, for at most one window length."""
        register: Callable[[str], Callable[..., Awaitable[Any]]] = (
            scripts_client.register_script if scripts_client is not None else client.register_script
        )
        self._window_hit = register(scripts.WINDOW_HIT)
        self._window_add = register(scripts.WINDOW_ADD)
        self._window_used = register(scripts.WINDOW_USED)
        self._slots_acquire = register(scripts.SLOTS_ACQUIRE)
        self._slots_release = register(scripts.SLOTS_RELEASE)
        self._spend_reserve = register(scripts.SPEND_RESERVE)
        self._spend_settle = register(scripts.SPEND_SETTLE)
        self._spend_state = register(scripts.SPEND_STATE)
        self._spend_seed = register(scripts.SPEND_SEED)
        self._once = register(scripts.ONCE)
        self._slots_used = register(scripts.SLOTS_USED)
        self._admit = register(scripts.ADMIT)
        self._finish = register(scripts.FINISH)
        self._cache: dict[tuple[int, str], tuple[object, list[bytes], bytes]] = {}

    def key(self, name: str) -> str:
        return self.prefix + name

    # -- what a model request sends, encoded once per policy -------------------------------

    def _encoded(
        self, checks: Sequence[_Check], numbers: Callable[[_Check], str], prefix: str
    ) -> tuple[list[bytes], bytes]:
        """The checks' keys and numbers as the scripts take them, from the cache when ``checks`` is
        a tuple seen before (a rate or budget plan's: the same object for every request under one
        policy). Sending bytes, and the numbers as one argument, is most of what a call costs here."""
        if not checks:
            return [], b""
        if isinstance(checks, tuple):
            hit = self._cache.get((id(checks), prefix))
            if hit is not None and hit[0] is checks:
                return hit[1], hit[2]
        found = ([(prefix + check.key).encode() for check in checks], " ".join(map(numbers, checks)).encode())
        if isinstance(checks, tuple):
            self._remember(checks, prefix, found)
        return found

    def _keys(self, names: Sequence[str], prefix: str) -> list[bytes]:
        if not names:
            return []
        if isinstance(names, tuple):
            hit = self._cache.get((id(names), prefix))
            if hit is not None and hit[0] is names:
                return hit[1]
        keys = [(prefix + name).encode() for name in names]
        if isinstance(names, tuple):
            self._remember(names, prefix, (keys, b""))
        return keys

    def _remember(self, source: tuple[object, ...], prefix: str, found: tuple[list[bytes], bytes]) -> None:
        if len(self._cache) >= CACHE_SIZE:  # plans of replaced policies are never asked for again
            self._cache.clear()
        # Holding `source` keeps its id from being reused.
        self._cache[(id(source), prefix)] = (source, *found)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def aclose(self) -> None:
        if self.scripts_client is not None:
            await self.scripts_client.aclose()
        await self.client.aclose()

    # -- windows ---------------------------------------------------------------------------

    async def window_hit(self, checks: Sequence[WindowCheck], now: float) -> WindowDenial | None:
        args: list[float | str | int] = [now]
        for check in checks:
            args += [check.limit, check.window, check.cost, _slice(check.window, now), _ttl_ms(check.window)]
        reply = await self._window_hit(keys=[self.window_prefix + c.key for c in checks], args=args)
        if reply is None:
            return None
        return WindowDenial(int(reply[0]), float(reply[1]), float(reply[2]))

    async def window_add(self, key: str, amount: float, window: float, now: float) -> None:
        if amount <= 0:
            return
        args: list[float | str | int] = [now, window, amount, _slice(window, now), _ttl_ms(window)]
        await self._window_add(keys=[self.window_prefix + key], args=args)

    async def window_used(self, key: str, window: float, now: float) -> float:
        return float(await self._window_used(keys=[self.window_prefix + key], args=[now, window]))

    # -- concurrency slots -----------------------------------------------------------------

    async def slots_acquire(
        self, checks: Sequence[SlotCheck], lease: str, now: float, ttl: float
    ) -> int | None:
        args: list[float | str | int] = [lease, now, now + ttl, _ttl_ms(ttl)]
        args += [check.limit for check in checks]
        full = int(await self._slots_acquire(keys=[self.prefix + c.key for c in checks], args=args))
        return None if full < 0 else full

    async def slots_release(self, keys: Sequence[str], lease: str) -> None:
        if keys:
            await self._slots_release(keys=[self.prefix + key for key in keys], args=[lease])

    async def slots_used(self, key: str, now: float) -> int:
        return int(await self._slots_used(keys=[self.prefix + key], args=[now]))

    # -- spend -----------------------------------------------------------------------------

    async def spend_reserve(
        self, checks: Sequence[SpendCheck], lease: str, amount: float, now: float, ttl: float
    ) -> SpendDenial | None:
        args: list[float | str] = [lease, amount, now, now + ttl]
        for check in checks:
            args += [check.limit, check.expires_at]
        reply = await self._spend_reserve(keys=[self.prefix + c.key for c in checks], args=args)
        if reply is None:
            return None
        return SpendDenial(int(reply[0]), _state(reply[1:]))

    async def spend_settle(
        self, keys: Sequence[str], lease: str, actual: float, now: float
    ) -> list[SpendState]:
        if not keys:
            return []
        reply = await self._spend_settle(keys=[self.prefix + key for key in keys], args=[lease, actual, now])
        return [_state(item) for item in reply]

    async def spend_state(self, key: str, now: float) -> SpendState:
        return _state(await self._spend_state(keys=[self.prefix + key], args=[now]))

    async def spend_seed(self, key: str, spent: float, expires_at: float) -> None:
        await self._spend_seed(keys=[self.prefix + key], args=[spent, expires_at])

    async def once(self, key: str, expires_at: float) -> bool:
        return bool(await self._once(keys=[self.prefix + key], args=[expires_at]))

    # -- a model request's admission and end, one round trip each ---------------------------

    async def admit(
        self,
        lease: str,
        now: float,
        *,
        slots: Sequence[SlotCheck] = (),
        slot_ttl: float = 0.0,
        windows: Sequence[WindowCheck] = (),
        spend: Sequence[SpendCheck] = (),
        amount: float = 0.0,
        spend_ttl: float = 0.0,
    ) -> Denial | None:
        slot_keys, slot_numbers = self._encoded(slots, _slot_numbers, self.prefix)
        window_keys, window_numbers = self._encoded(windows, _window_numbers, self.window_prefix)
        spend_keys, spend_numbers = self._encoded(spend, _spend_numbers, self.prefix)
        numbers = b" ".join((slot_numbers, window_numbers, spend_numbers))
        args: list[float | str | int | bytes] = [
            lease,
            now,
            len(slots),
            len(windows),
            now + slot_ttl,
            _ttl_ms(slot_ttl),
            amount,
            now + spend_ttl,
            numbers,
        ]
        args += [_slice(w.window, now) for w in windows]
        reply = await self._admit(keys=[*slot_keys, *window_keys, *spend_keys], args=args)
        if reply is None:
            return None
        kind, index = int(reply[0]), int(reply[1])
        if kind == 0:
            return SlotDenial(index)
        if kind == 1:
            return WindowDenial(index, float(reply[2]), float(reply[3]))
        return SpendDenial(index, _state(reply[2:]))

    async def finish(
        self,
        lease: str,
        now: float,
        *,
        slot_keys: Sequence[str] = (),
        token_keys: Sequence[str] = (),
        tokens: float = 0.0,
        window: float = 60.0,
        spend_keys: Sequence[str] = (),
        actual: float = 0.0,
    ) -> list[SpendState]:
        keys = [
            *self._keys(slot_keys, self.prefix),
            *self._keys(token_keys, self.window_prefix),
            *self._keys(spend_keys, self.prefix),
        ]
        if not keys:
            return []
        args: list[float | str | int] = [
            lease,
            now,
            len(slot_keys),
            len(token_keys),
            tokens,
            window,
            _slice(window, now),
            _ttl_ms(window),
            actual,
        ]
        reply = await self._finish(keys=keys, args=args)
        return [_state(item) for item in reply]
