"""One request in flight on an upstream session: the answer its caller waits for, and the
notifications that arrived for it on a task other than the caller's."""

from __future__ import annotations

import asyncio
from collections import deque

from mcp_gateway.upstream.base import ClientAsker, JsonObject, NotificationHandler, UpstreamError


class PendingCall:
    """One request in flight: the answer its caller waits for and where its notifications go."""

    __slots__ = ("_waiter", "asker", "backlog", "error", "inline", "method", "relay", "reply", "request_id")

    def __init__(self, request_id: int, method: str, relay: NotificationHandler | None, inline: bool) -> None:
        self.request_id = request_id
        self.method = method
        self.relay = relay
        """The caller's handler for this call's notifications (None: it wants none)."""
        self.inline = inline
        """The transport reads this call's answer on the caller's own task (HTTP)."""
        self.reply: JsonObject | None = None
        self.error: UpstreamError | None = None
        self.backlog: deque[JsonObject] | None = None
        """Notifications that arrived on another task, for the caller's task to relay."""
        self._waiter: asyncio.Future[None] | None = None
        self.asker: ClientAsker | None = None
        """The downstream caller, for the upstream's requests during this call (None: an internal one)."""

    def resolve(self, reply: JsonObject) -> None:
        if self.reply is None and self.error is None:
            self.reply = reply
            waiter = self._waiter  # `_wake`, inlined: every call pays this once
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def fail(self, error: UpstreamError) -> None:
        if self.reply is None and self.error is None:
            self.error = error
            self._wake()

    def queue(self, note: JsonObject) -> None:
        """Keep a notification for the caller's task to relay (it arrived on another task)."""
        if self.backlog is None:
            self.backlog = deque()
        self.backlog.append(note)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def relay_queued(self) -> None:
        backlog = self.backlog
        while backlog:
            note = backlog.popleft()
            if self.relay is not None:
                await self.relay(note)

    async def wait(self) -> JsonObject:
        """Relay queued notifications in arrival order until the answer is in, then return it."""
        while True:
            if self.backlog:
                await self.relay_queued()
            if self.reply is not None:
                return self.reply
            if self.error is not None:
                raise self.error
            if self.inline:
                raise UpstreamError("the exchange ended without an answer")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
