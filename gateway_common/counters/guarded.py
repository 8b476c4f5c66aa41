"""The failure policy around a shared counter store: what requests get while it cannot be reached.

`GuardedCounterStore` is a `CounterStore` over another one (Redis). Every call is
bounded by ``counters.timeout_ms``; a Redis error or timeout becomes the policy's
answer for the concern the call serves (``counters.on_unavailable``):

- admission checks (``window_hit``, ``slots_acquire`` for rate limits; ``spend_reserve``
  for budgets; ``admit``, a model request's all three at once, for each concern it checks:
  one that refuses refuses the request): ``allow`` lets the request through uncounted, ``refuse`` raises the
  refusal the front door maps to its wire (503 with ``retry-after`` on the model API,
  a JSON-RPC error on tools/call: see `with_refusal`);
- bookkeeping after the fact (``slots_release``, ``window_add``, ``spend_settle``,
  ``finish``, ``spend_seed``) cannot be refused: it is kept (bounded) and replayed as soon as the
  store answers again, so slots are freed and spend lands late rather than never
  (a settlement whose reply was lost may count twice: budgets err on the safe side);
- reads for status pages raise `CounterStoreUnavailable`; ``once`` (budget alerts) says
  False (an alert may be late, never repeated).

Each call is bounded here by an ``asyncio.timeout``, unless the inner store bounds every call
itself (``bounded_inside``: `RespScripts` does, with one timer per connection; a timer per call
here cost about 15 µs, a sixth of a Redis round trip's CPU).

Availability is shared (`StoreHealth`): logged once per outage, shown by /readyz and
/metrics, cleared by the next call that succeeds. Nothing here needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from time import perf_counter
from typing import TypeVar

from redis.exceptions import RedisError

from gateway_common.counters.health import StoreHealth
from policies.counters import (
    CounterStore,
    Denial,
    SlotCheck,
    SpendCheck,
    SpendDenial,
    SpendState,
    WindowCheck,
    WindowDenial,
)
from policies.counters_settings import OnUnavailable, WhenUnavailable

logger = logging.getLogger("mcp_gateway")

T = TypeVar("T")
RETRY_AFTER = 2.0
"""What a refused client is told to wait (seconds)."""
MAX_PENDING = 10_000
"""Bookkeeping calls kept for replay during one outage (the oldest are dropped beyond this)."""
_ERRORS = (RedisError, OSError, TimeoutError)


class Concern(StrEnum):
    BUDGETS = "budgets"
    RATE_LIMITS = "rate_limits"


class CounterStoreUnavailable(Exception):
    """The counter store could not be reached, and the policy refuses what it cannot count."""

    def __init__(self, concern: Concern, retry_after: float = RETRY_AFTER) -> None:
        super().__init__(f"the counter store is unavailable ({concern} cannot be checked)")
        self.concern = concern
        self.retry_after = retry_after


Refusal = Callable[[Concern, float], BaseException]
"""Builds what a refused request raises (each front door maps its own errors to its wire)."""


class _Down(Exception):
    """The store did not answer this call (or is skipped until the next probe)."""


class _Shared:
    """What every view of one guarded store shares: the store, its health and the replay queue."""

    def __init__(
        self,
        inner: CounterStore,
        health: StoreHealth,
        policy: OnUnavailable,
        timeout: float,
        bounded_inside: bool,
    ) -> None:
        self.inner = inner
        self.health = health
        self.policy = policy
        self.timeout = timeout
        self.bounded_inside = bounded_inside
        self.pending: deque[tuple[str, Callable[[], Awaitable[object]]]] = deque(maxlen=MAX_PENDING)
        self.replaying: asyncio.Task[None] | None = None

    async def run(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        health = self.health
        if not health.may_try():
            raise _Down
        started = perf_counter()
        try:
            if self.bounded_inside:
                result = await call()
            else:
                async with asyncio.timeout(self.timeout):
                    result = await call()
        except _ERRORS as exc:
            health.observe(op, perf_counter() - started)
            health.failed(op, exc)
            raise _Down from None
        health.observe(op, perf_counter() - started)
        if not health.available and health.succeeded():
            self._replay_soon()
        return result

    def keep(self, op: str, call: Callable[[], Awaitable[object]]) -> None:
        if len(self.pending) == self.pending.maxlen:
            logger.warning("counter store unavailable: %d calls waiting, dropping the oldest", MAX_PENDING)
        self.pending.append((op, call))

    def _replay_soon(self) -> None:
        if self.pending and (self.replaying is None or self.replaying.done()):
            self.replaying = asyncio.get_running_loop().create_task(self._replay(), name="counters-replay")

    async def _replay(self) -> None:
        done = 0
        while self.pending:
            op, call = self.pending.popleft()
            try:
                await self.run(op, call)
            except _Down:
                self.pending.appendleft((op, call))
                break
            done += 1
        logger.info("counter store: replayed %d calls kept during the outage", done)

    async def aclose(self) -> None:
        task = self.replaying
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending:
            logger.warning(
                "counter store: %d calls kept during an outage were never replayed", len(self.pending)
            )


def _default_refusal(concern: Concern, retry_after: float) -> BaseException:
    return CounterStoreUnavailable(concern, retry_after)


class GuardedCounterStore:
    """A `CounterStore` that applies ``counters.on_unavailable`` when ``inner`` fails or is slow."""

    def __init__(
        self,
        inner: CounterStore,
        health: StoreHealth,
        policy: OnUnavailable,
        timeout: float,
        refusal: Refusal = _default_refusal,
        *,
        bounded_inside: bool = False,
        _shared: _Shared | None = None,
    ) -> None:
        """``bounded_inside``: ``inner`` fails each of its calls within ``timeout`` by itself."""
        self._shared = _shared or _Shared(inner, health, policy, timeout, bounded_inside)
        self._refusal = refusal
        self.health = health

    def with_refusal(self, refusal: Refusal) -> GuardedCounterStore:
        """The same store (same health, same replay queue) refusing with ``refusal``'s exceptions."""
        shared = self._shared
        return GuardedCounterStore(
            shared.inner, shared.health, shared.policy, shared.timeout, refusal, _shared=shared
        )

    @property
    def inner(self) -> CounterStore:
        return self._shared.inner

    @property
    def pending(self) -> int:
        return len(self._shared.pending)

    async def aclose(self) -> None:
        await self._shared.aclose()

    def _fallback(self, concern: Concern) -> None:
        """Allow (return) or refuse (raise), as the policy says for ``concern``."""
        policy = self._shared.policy
        when = policy.budgets if concern is Concern.BUDGETS else policy.rate_limits
        if when is WhenUnavailable.REFUSE:
            raise self._refusal(concern, RETRY_AFTER)

    # -- admission -------------------------------------------------------------------------

    async def window_hit(self, checks: Sequence[WindowCheck], now: float) -> WindowDenial | None:
        inner = self._shared.inner
        try:
            return await self._shared.run("window_hit", lambda: inner.window_hit(checks, now))
        except _Down:
            self._fallback(Concern.RATE_LIMITS)
            return None

    async def slots_acquire(
        self, checks: Sequence[SlotCheck], lease: str, now: float, ttl: float
    ) -> int | None:
        inner = self._shared.inner
        try:
            return await self._shared.run(
                "slots_acquire", lambda: inner.slots_acquire(checks, lease, now, ttl)
            )
        except _Down:
            self._fallback(Concern.RATE_LIMITS)
            return None

    async def spend_reserve(
        self, checks: Sequence[SpendCheck], lease: str, amount: float, now: float, ttl: float
    ) -> SpendDenial | None:
        inner = self._shared.inner
        try:
            return await self._shared.run(
                "spend_reserve", lambda: inner.spend_reserve(checks, lease, amount, now, ttl)
            )
        except _Down:
            self._fallback(Concern.BUDGETS)
            return None

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
        """Down: each concern the call checks gets its own policy, rate limits first (the order the
        separate calls had), so one that refuses refuses the request and all allowing lets it in."""
        inner = self._shared.inner
        try:
            return await self._shared.run(
                "admit",
                lambda: inner.admit(
                    lease,
                    now,
                    slots=slots,
                    slot_ttl=slot_ttl,
                    windows=windows,
                    spend=spend,
                    amount=amount,
                    spend_ttl=spend_ttl,
                ),
            )
        except _Down:
            if slots or windows:
                self._fallback(Concern.RATE_LIMITS)
            if spend:
                self._fallback(Concern.BUDGETS)
            return None

    # -- bookkeeping (replayed when the store is back) -------------------------------------

    async def _book(self, op: str, call: Callable[[], Awaitable[T]]) -> T | None:
        try:
            return await self._shared.run(op, call)
        except _Down:
            self._shared.keep(op, call)
            return None

    async def window_add(self, key: str, amount: float, window: float, now: float) -> None:
        inner = self._shared.inner
        await self._book("window_add", lambda: inner.window_add(key, amount, window, now))

    async def slots_release(self, keys: Sequence[str], lease: str) -> None:
        inner = self._shared.inner
        await self._book("slots_release", lambda: inner.slots_release(keys, lease))

    async def spend_settle(
        self, keys: Sequence[str], lease: str, actual: float, now: float
    ) -> list[SpendState]:
        inner = self._shared.inner
        states = await self._book("spend_settle", lambda: inner.spend_settle(keys, lease, actual, now))
        if states is None:  # unknown until replayed: no alert fires from it
            return [SpendState(0.0, 0.0, 0) for _ in keys]
        return states

    async def spend_seed(self, key: str, spent: float, expires_at: float) -> None:
        inner = self._shared.inner
        await self._book("spend_seed", lambda: inner.spend_seed(key, spent, expires_at))

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
        inner = self._shared.inner

        def call() -> Awaitable[list[SpendState]]:
            return inner.finish(
                lease,
                now,
                slot_keys=slot_keys,
                token_keys=token_keys,
                tokens=tokens,
                window=window,
                spend_keys=spend_keys,
                actual=actual,
            )

        states = await self._book("finish", call)
        if states is None:  # unknown until replayed: no alert fires from it
            return [SpendState(0.0, 0.0, 0) for _ in spend_keys]
        return states

    # -- reads -----------------------------------------------------------------------------

    async def window_used(self, key: str, window: float, now: float) -> float:
        inner = self._shared.inner
        try:
            return await self._shared.run("window_used", lambda: inner.window_used(key, window, now))
        except _Down:
            raise CounterStoreUnavailable(Concern.RATE_LIMITS) from None

    async def slots_used(self, key: str, now: float) -> int:
        inner = self._shared.inner
        try:
            return await self._shared.run("slots_used", lambda: inner.slots_used(key, now))
        except _Down:
            raise CounterStoreUnavailable(Concern.RATE_LIMITS) from None

    async def spend_state(self, key: str, now: float) -> SpendState:
        inner = self._shared.inner
        try:
            return await self._shared.run("spend_state", lambda: inner.spend_state(key, now))
        except _Down:
            raise CounterStoreUnavailable(Concern.BUDGETS) from None

    async def once(self, key: str, expires_at: float) -> bool:
        inner = self._shared.inner
        try:
            return await self._shared.run("once", lambda: inner.once(key, expires_at))
        except _Down:
            return False
