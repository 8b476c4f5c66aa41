"""Change signals between gateway processes (`ChangeBus`): in-process, or Redis pub/sub."""

from __future__ import annotations

from gateway_common.signals.bus import RESYNC, BusState, Change, ChangeBus, Handler, new_origin
from gateway_common.signals.memory import MemoryBroker, MemoryBus
from policies.counters_settings import CountersSettings


def open_bus(settings: CountersSettings) -> ChangeBus:
    """The bus the ``counters`` section implies: Redis pub/sub with ``backend: redis``, else in-process."""
    if settings.backend == "redis":
        from gateway_common.signals.redis_bus import RedisBus

        return RedisBus(settings)
    return MemoryBus()


__all__ = [
    "RESYNC",
    "BusState",
    "Change",
    "ChangeBus",
    "Handler",
    "MemoryBroker",
    "MemoryBus",
    "new_origin",
    "open_bus",
]
