"""The in-process bus: one process alone (the embedded default), or several buses in one process.

A gateway without Redis has no peers: publishing reaches nobody and each process
notices database key changes by polling (`PolicyState.watch_keys`), as before. Tests
attach several buses to one `MemoryBroker` to play several processes in one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from gateway_common.signals.bus import BusState, Change, Dispatcher, Handler, new_origin


class MemoryBroker:
    """What in-process buses share: each message goes to every attached bus but its sender."""

    def __init__(self) -> None:
        self.buses: list[MemoryBus] = []

    def send(self, sender: MemoryBus, change: Change) -> None:
        for bus in list(self.buses):
            if bus is not sender:
                bus.hear(change)


class MemoryBus:
    def __init__(self, broker: MemoryBroker | None = None, *, origin: str | None = None) -> None:
        self.origin = origin or new_origin()
        self.broker = broker or MemoryBroker()
        self._dispatch = Dispatcher()
        self._state: BusState = "local"
        self.broker.buses.append(self)

    @property
    def state(self) -> BusState:
        return self._state

    async def start(self) -> None:
        return None

    async def publish(self, kind: str, payload: Mapping[str, Any]) -> bool:
        if self._state == "closed":
            return False
        change = Change(kind, dict(payload), self.origin)
        await asyncio.sleep(0)  # delivered later, as a remote bus would: never inside the publisher's call
        self.broker.send(self, change)
        return True

    def hear(self, change: Change) -> None:
        if self._state != "closed":
            self._dispatch.dispatch(change)

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        return self._dispatch.subscribe(handler)

    def health(self) -> dict[str, Any]:
        return {"backend": "memory", "state": self._state, "peers": len(self.broker.buses) - 1}

    async def aclose(self) -> None:
        self._state = "closed"
        if self in self.broker.buses:
            self.broker.buses.remove(self)
        await self._dispatch.aclose()
