"""Whether the shared counter store answers, as /readyz and /metrics show it.

One `StoreHealth` per process, shared by every `GuardedCounterStore` over the same
store. The first failure of an outage is logged loudly (once: not per request) and
the first success after it is logged as the recovery. While the store is down, at
most one call per `PROBE_INTERVAL` tries it; the others get the failure policy at
once, so a Redis that blackholes packets costs one timeout per interval, not one per
request.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("mcp_gateway")

PROBE_INTERVAL = 0.5
"""While the store is down, it is tried again at most this often (seconds)."""
LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Store operation latency histogram buckets (seconds)."""


@dataclass(slots=True)
class OpLatency:
    """Counts per bucket (the last is +Inf) and the sum, in seconds."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    sum: float = 0.0


class StoreHealth:
    """The store's backend, availability and per-operation latency."""

    def __init__(self, backend: str, *, clock: Any = time.monotonic) -> None:
        self.backend = backend
        self.available = True
        self.down_since: float | None = None
        """Wall-clock time the current outage began (None while available)."""
        self.last_error: str | None = None
        self.outages = 0
        self.failures = 0
        """Failed operations since the process started."""
        self.latency: dict[str, OpLatency] = {}
        self._clock = clock
        self._next_probe = 0.0

    # -- recording -------------------------------------------------------------------------

    def observe(self, op: str, seconds: float) -> None:
        cell = self.latency.get(op)
        if cell is None:
            cell = self.latency[op] = OpLatency()
        cell.counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        cell.sum += seconds

    def may_try(self) -> bool:
        """Whether a call should reach the store now (always while up; one probe per interval while down)."""
        if self.available:
            return True
        now = self._clock()
        if now < self._next_probe:
            return False
        self._next_probe = now + PROBE_INTERVAL
        return True

    def failed(self, op: str, exc: BaseException) -> None:
        self.failures += 1
        detail = f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__
        self.last_error = detail
        self._next_probe = self._clock() + PROBE_INTERVAL
        if self.available:
            self.available = False
            self.down_since = time.time()
            self.outages += 1
            logger.error(
                "counter store (%s) UNAVAILABLE (%s during %s): requests now get the on_unavailable "
                "policy until it answers again",
                self.backend,
                detail,
                op,
            )

    def succeeded(self) -> bool:
        """Mark the store available; True if that ends an outage."""
        if self.available:
            return False
        self.available = True
        began = self.down_since
        self.down_since = None
        lasted = f" after {time.time() - began:.1f} s" if began is not None else ""
        logger.warning("counter store (%s) available again%s: counting resumed", self.backend, lasted)
        return True

    # -- reading ---------------------------------------------------------------------------

    def detail(self) -> dict[str, Any]:
        """For /readyz's detail."""
        found: dict[str, Any] = {
            "backend": self.backend,
            "state": "available" if self.available else "unavailable",
            "outages": self.outages,
        }
        if not self.available:
            found["down_since"] = self.down_since
        if self.last_error is not None:
            found["last_error"] = self.last_error
        return found
