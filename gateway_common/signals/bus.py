"""The change bus: how one gateway process tells the others that something changed.

Replicas (and worker processes) each hold their own copy of the keys and the policy.
When one of them learns of a change (a key revoked in the database, a policy reload
through its API or SIGHUP, a client ending its session), it publishes a small message
of a ``kind`` with a JSON ``payload``; every *other* process subscribed to the same bus
hears it and applies the change to itself. A message never carries a secret: it says
what to re-read (the database, the policy file), not what the new state is.

Delivery is at most once: a subscriber that was disconnected may have missed
messages, so it is then handed a `RESYNC` change and refreshes everything it
follows (the keys from the database, the policy file if it differs). Handlers run
as tasks of their own, so a slow one (a policy reload waiting for an upstream) never
holds up the next message, and one that fails is logged without ending delivery.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

logger = logging.getLogger("gateway_common.signals")

RESYNC = "resync"
"""Kind of the change a subscriber gets when it may have missed messages (after a (re)connect)."""
BusState = Literal["local", "connecting", "connected", "reconnecting", "closed"]


def new_origin() -> str:
    """A name for this process on the bus: host, PID and a random part (a PID can be reused)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Change:
    """One message heard on the bus."""

    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""
    """The publishing process (`new_origin`); empty for a `RESYNC` made locally."""


Handler = Callable[[Change], Awaitable[None]]


class ChangeBus(Protocol):
    """Publish a change to the other processes; hear theirs (never one's own)."""

    origin: str

    @property
    def state(self) -> BusState: ...

    async def start(self) -> None:
        """Begin listening (returns at once; a remote bus connects in the background)."""

    async def publish(self, kind: str, payload: Mapping[str, Any]) -> bool:
        """Send a change to every other subscriber; False if it could not be sent (logged, never raised)."""

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """Call ``handler`` for each change heard; returns the function that stops it."""

    def health(self) -> dict[str, Any]:
        """What /readyz shows: the backend and its state."""

    async def aclose(self) -> None:
        """Stop listening and cancel handlers still running."""


class Dispatcher:
    """The subscriber side every bus shares: handlers, and the tasks running them."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        self._handlers.append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    def dispatch(self, change: Change) -> None:
        self.delivered += 1
        for handler in list(self._handlers):
            task = asyncio.get_running_loop().create_task(
                self._run(handler, change), name=f"bus-{change.kind}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(handler: Handler, change: Change) -> None:
        try:
            await handler(change)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "a handler failed on the change %r from %s", change.kind, change.origin or "here"
            )

    async def aclose(self) -> None:
        self._handlers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
