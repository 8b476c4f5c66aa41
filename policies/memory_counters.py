"""`MemoryCounterStore`: the `CounterStore` for one process, exact because nothing in it awaits.

It is also the reference the Redis store's Lua scripts mirror step for step
(`gateway_common/counters/scripts.py`): same expiry rules, same order of checks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class _Window:
    slices: deque[list[float]] = field(default_factory=deque)
    """[slice start, amount] pairs, oldest first."""
    total: float = 0.0

    def expire(self, window: float, now: float) -> None:
        slices = self.slices
        while slices and slices[0][0] + window <= now:
            self.total -= slices.popleft()[1]
        if not slices:
            self.total = 0.0

    def add(self, amount: float, window: float, now: float) -> None:
        width = window / WINDOW_SLICES
        start = now - (now % width)
        if self.slices and self.slices[-1][0] == start:
            self.slices[-1][1] += amount
        else:
            self.slices.append([start, amount])
        self.total += amount

    def retry_after(self, limit: float, cost: float, window: float, now: float) -> float:
        used = self.total
        for start, amount in self.slices:
            used -= amount
            if used < limit and used + cost <= limit:
                return max(start + window - now, 0.0)
        return window


@dataclass(slots=True)
class _Spend:
    spent: float = 0.0
    leases: dict[str, tuple[float, float]] = field(default_factory=dict)
    """lease -> (amount, expires at)."""
    reserved: float = 0.0
    expires_at: float = 0.0
    next_expiry: float = float("inf")
    """No lease expires before this; leases are only scanned once it has passed."""

    def expire_leases(self, now: float) -> None:
        if now < self.next_expiry:
            return
        stale = [lease for lease, (_, until) in self.leases.items() if until <= now]
        for lease in stale:
            self.reserved -= self.leases.pop(lease)[0]
        if not self.leases:
            self.reserved = 0.0
        self.next_expiry = min((until for _, until in self.leases.values()), default=float("inf"))

    def state(self) -> SpendState:
        return SpendState(self.spent, max(self.reserved, 0.0), len(self.leases))


@dataclass(slots=True)
class _Slots:
    leases: dict[str, float] = field(default_factory=dict)
    """lease -> expires at."""
    next_expiry: float = float("inf")

    def expire(self, now: float) -> None:
        if now < self.next_expiry:
            return
        for stale in [name for name, until in self.leases.items() if until <= now]:
            del self.leases[stale]
        self.next_expiry = min(self.leases.values(), default=float("inf"))


class MemoryCounterStore:
    """`CounterStore` for one process. Atomic because nothing in it awaits."""

    def __init__(self, prune_every: int = 10_000) -> None:
        self._windows: dict[str, _Window] = {}
        self._slots: dict[str, _Slots] = {}
        self._spend: dict[str, _Spend] = {}
        self._once: dict[str, float] = {}
        self._ops = 0
        self._prune_every = prune_every

    # -- the steps every operation is made of (plain code: atomic because nothing awaits) ---

    def _windows_check(self, checks: Sequence[WindowCheck], now: float) -> list[_Window] | WindowDenial:
        windows = []
        for index, check in enumerate(checks):
            window = self._windows.get(check.key)
            if window is None:
                window = self._windows[check.key] = _Window()
            window.expire(check.window, now)
            used = window.total
            if used >= check.limit or used + check.cost > check.limit:
                retry = window.retry_after(check.limit, check.cost, check.window, now)
                return WindowDenial(index, used, retry)
            windows.append(window)
        return windows

    @staticmethod
    def _windows_charge(windows: list[_Window], checks: Sequence[WindowCheck], now: float) -> None:
        for window, check in zip(windows, checks, strict=True):
            if check.cost:
                window.add(check.cost, check.window, now)

    def _window_add(self, key: str, amount: float, window: float, now: float) -> None:
        entry = self._windows.get(key)
        if entry is None:
            entry = self._windows[key] = _Window()
        entry.expire(window, now)
        entry.add(amount, window, now)

    def _slots_check(self, checks: Sequence[SlotCheck], lease: str, now: float) -> list[_Slots] | int:
        holders = []
        for index, check in enumerate(checks):
            slots = self._slots.get(check.key)
            if slots is None:
                slots = self._slots[check.key] = _Slots()
            else:
                slots.expire(now)
            if len(slots.leases) >= check.limit and lease not in slots.leases:
                return index
            holders.append(slots)
        return holders

    @staticmethod
    def _slots_take(holders: list[_Slots], lease: str, until: float) -> None:
        for slots in holders:
            slots.leases[lease] = until
            if until < slots.next_expiry:
                slots.next_expiry = until

    def _slots_release(self, keys: Sequence[str], lease: str) -> None:
        for key in keys:
            slots = self._slots.get(key)
            if slots is not None:
                slots.leases.pop(lease, None)

    def _spend_check(self, checks: Sequence[SpendCheck], now: float) -> list[_Spend] | SpendDenial:
        counters = []
        for index, check in enumerate(checks):
            counter = self._spend.get(check.key)
            if counter is None:
                counter = self._spend[check.key] = _Spend(expires_at=check.expires_at)
            else:
                counter.expire_leases(now)
            if counter.spent + counter.reserved >= check.limit:
                return SpendDenial(index, counter.state())
            counters.append(counter)
        return counters

    @staticmethod
    def _spend_take(counters: list[_Spend], lease: str, amount: float, until: float) -> None:
        for counter in counters:
            previous = counter.leases.get(lease)
            if previous is not None:
                counter.reserved -= previous[0]
            counter.leases[lease] = (amount, until)
            counter.reserved += amount
            if until < counter.next_expiry:
                counter.next_expiry = until

    def _spend_settle(self, keys: Sequence[str], lease: str, actual: float, now: float) -> list[SpendState]:
        states = []
        for key in keys:
            counter = self._spend.get(key)
            if counter is None:
                counter = self._spend[key] = _Spend(expires_at=now + 40 * 86_400)
            held = counter.leases.pop(lease, None)
            if held is not None:
                counter.reserved -= held[0]
            if not counter.leases:
                counter.reserved = 0.0
            counter.spent += actual
            states.append(counter.state())
        return states

    # -- the operations --------------------------------------------------------------------

    async def window_hit(self, checks: Sequence[WindowCheck], now: float) -> WindowDenial | None:
        windows = self._windows_check(checks, now)
        if isinstance(windows, WindowDenial):
            return windows
        self._windows_charge(windows, checks, now)
        self._tick(now)
        return None

    async def window_add(self, key: str, amount: float, window: float, now: float) -> None:
        if amount > 0:
            self._window_add(key, amount, window, now)

    async def window_used(self, key: str, window: float, now: float) -> float:
        entry = self._windows.get(key)
        if entry is None:
            return 0.0
        entry.expire(window, now)
        return entry.total

    async def slots_acquire(
        self, checks: Sequence[SlotCheck], lease: str, now: float, ttl: float
    ) -> int | None:
        holders = self._slots_check(checks, lease, now)
        if isinstance(holders, int):
            return holders
        self._slots_take(holders, lease, now + ttl)
        return None

    async def slots_release(self, keys: Sequence[str], lease: str) -> None:
        self._slots_release(keys, lease)

    async def slots_used(self, key: str, now: float) -> int:
        slots = self._slots.get(key)
        if slots is None:
            return 0
        return sum(1 for until in slots.leases.values() if until > now)

    async def spend_reserve(
        self, checks: Sequence[SpendCheck], lease: str, amount: float, now: float, ttl: float
    ) -> SpendDenial | None:
        counters = self._spend_check(checks, now)
        if isinstance(counters, SpendDenial):
            return counters
        self._spend_take(counters, lease, amount, now + ttl)
        self._tick(now)
        return None

    async def spend_settle(
        self, keys: Sequence[str], lease: str, actual: float, now: float
    ) -> list[SpendState]:
        return self._spend_settle(keys, lease, actual, now)

    async def spend_state(self, key: str, now: float) -> SpendState:
        counter = self._spend.get(key)
        if counter is None:
            return SpendState(0.0, 0.0, 0)
        counter.expire_leases(now)
        return counter.state()

    async def spend_seed(self, key: str, spent: float, expires_at: float) -> None:
        if key not in self._spend:
            self._spend[key] = _Spend(spent=spent, expires_at=expires_at)

    async def once(self, key: str, expires_at: float) -> bool:
        if key in self._once:
            return False
        self._once[key] = expires_at
        return True

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
        holders = self._slots_check(slots, lease, now) if slots else []
        if isinstance(holders, int):
            return SlotDenial(holders)
        charged = self._windows_check(windows, now) if windows else []
        if isinstance(charged, WindowDenial):
            return charged
        counters = self._spend_check(spend, now) if spend else []
        if isinstance(counters, SpendDenial):
            return counters
        if holders:
            self._slots_take(holders, lease, now + slot_ttl)
        if charged:
            self._windows_charge(charged, windows, now)
        if counters:
            self._spend_take(counters, lease, amount, now + spend_ttl)
        self._tick(now)
        return None

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
        self._slots_release(slot_keys, lease)
        if tokens > 0:
            for key in token_keys:
                self._window_add(key, tokens, window, now)
        return self._spend_settle(spend_keys, lease, actual, now)

    # -- housekeeping ----------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        self._ops += 1
        if self._ops % self._prune_every == 0:
            self.prune(now)

    def prune(self, now: float, idle_window: float = 3600.0) -> None:
        """Forget counters of past periods and windows idle for longer than ``idle_window``."""
        for key in [k for k, c in self._spend.items() if c.expires_at <= now and not c.leases]:
            del self._spend[key]
        for key in [k for k, until in self._once.items() if until <= now]:
            del self._once[key]
        for key in [
            k for k, w in self._windows.items() if not w.slices or w.slices[-1][0] + idle_window <= now
        ]:
            del self._windows[key]
        for key in [k for k, slots in self._slots.items() if not slots.leases]:
            del self._slots[key]
