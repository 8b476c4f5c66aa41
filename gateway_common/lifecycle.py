"""Process lifecycle signals shared by the front doors."""

from __future__ import annotations

import asyncio


class ShutdownSignal:
    """Set when the process starts to stop, before connections are drained.

    Long-lived streams (the 2025 GET stream, 2026 listen streams) watch it and
    end, so that a graceful stop does not wait for them.
    """

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._set = False

    def trigger(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    @property
    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._event is None:
            self._event = asyncio.Event()
            if self._set:
                self._event.set()
        await self._event.wait()
