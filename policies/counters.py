"""The counters behind rate limits and budgets: the small async interface every store implements.

Every method is one atomic step, all-or-nothing across the keys it names. That is
what lets several gateway replicas enforce one limit exactly once the counters
live in a shared store: a Redis implementation runs each method as one Lua
script (sorted sets for windows and leases, hashes for spend) and the policy code
that calls it (`ratelimit`, `budgeting`) does not change. The one-process store is
`policies.memory_counters.MemoryCounterStore`.

Times are seconds since the epoch from the caller's injected clock; the store
never reads a clock itself. Leases (concurrency slots, budget reservations) carry
an expiry so that a replica that dies mid-request cannot hold a slot or a
reservation for ever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]
"""Seconds since the epoch, UTC. Injected everywhere a decision depends on time."""

WINDOW_SLICES = 60
"""A sliding window is kept as this many slices (one second each for a one-minute window)."""


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """One sliding-window limit to test (and charge) in `CounterStore.window_hit`."""

    key: str
    limit: float
    window: float
    """Window length in seconds."""
    cost: float = 1.0
    """What this hit adds; 0 checks only (tokens are added later, from real usage, by `window_add`)."""


@dataclass(frozen=True, slots=True)
class WindowDenial:
    index: int
    """Which check failed (position in the list given)."""
    used: float
    retry_after: float
    """Seconds until enough of the window has expired for the check to pass."""


@dataclass(frozen=True, slots=True)
class SlotCheck:
    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class SlotDenial:
    index: int
    """Which slot check is full (position in the list given)."""


@dataclass(frozen=True, slots=True)
class SpendCheck:
    key: str
    limit: float
    expires_at: float
    """When the counter may be forgotten (end of its budget period plus a margin)."""


@dataclass(slots=True)
class SpendState:
    spent: float
    reserved: float
    in_flight: int
    """Reservations currently held against this counter."""


@dataclass(frozen=True, slots=True)
class SpendDenial:
    index: int
    state: SpendState


Denial = SlotDenial | WindowDenial | SpendDenial
"""Why `CounterStore.admit` refused: the first full slot, window or budget counter."""


class CounterStore(Protocol):
    """What rate limits and budgets need from a store. Each call is atomic."""

    async def window_hit(self, checks: Sequence[WindowCheck], now: float) -> WindowDenial | None:
        """Deny if any window has ``used >= limit`` or ``used + cost > limit``; else add every cost."""
        ...

    async def window_add(self, key: str, amount: float, window: float, now: float) -> None:
        """Add to a window without checking (tokens counted after the response)."""
        ...

    async def window_used(self, key: str, window: float, now: float) -> float: ...

    async def slots_acquire(
        self, checks: Sequence[SlotCheck], lease: str, now: float, ttl: float
    ) -> int | None:
        """Take one slot under every key, or none: returns the index of a full one."""
        ...

    async def slots_release(self, keys: Sequence[str], lease: str) -> None: ...

    async def slots_used(self, key: str, now: float) -> int:
        """Leases held under ``key`` that have not expired at ``now`` (a read: nothing changes)."""
        ...

    async def spend_reserve(
        self, checks: Sequence[SpendCheck], lease: str, amount: float, now: float, ttl: float
    ) -> SpendDenial | None:
        """Deny if any counter has ``spent + reserved >= limit``; else reserve ``amount`` on all."""
        ...

    async def spend_settle(
        self, keys: Sequence[str], lease: str, actual: float, now: float
    ) -> list[SpendState]:
        """Drop the lease's reservation and add ``actual`` to each counter; returns the new states."""
        ...

    async def spend_state(self, key: str, now: float) -> SpendState: ...

    async def spend_seed(self, key: str, spent: float, expires_at: float) -> None:
        """Set a counter's spend if the store has never seen it (rebuilding after a restart)."""
        ...

    async def once(self, key: str, expires_at: float) -> bool:
        """True the first time a key is seen (until it expires), False afterwards."""
        ...

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
        """`slots_acquire`, `window_hit` and `spend_reserve` in one atomic step, all or nothing.

        Checked in that order; the first refusal is returned and nothing is taken or charged.
        A model request's whole admission is one call (one round trip to a shared store).
        """
        ...

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
        """`slots_release`, `window_add` of ``tokens`` to each token key, and `spend_settle` of
        ``spend_keys``, in one step; returns the settled counters' states (as `spend_settle`)."""
        ...
