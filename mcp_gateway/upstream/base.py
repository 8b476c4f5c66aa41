"""What every upstream connection offers the gateway, whatever its transport.

The gateway forwards tools/call as JSON-RPC over one long-lived connection per
upstream: it renumbers request ids, restores them on the way back, and never
builds typed SDK objects on the hot path (the SDK's ClientSession costs about
3 ms per call; this costs microseconds). The implementation is
`session.JsonRpcSession` over a stdio or streamable-HTTP transport.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_types.version import LATEST_HANDSHAKE_VERSION

from mcp_gateway import __version__

JsonObject = dict[str, Any]
NotificationHandler = Callable[[JsonObject], Awaitable[None]]
"""Receives notifications that belong to one in-flight request (progress, log messages)."""

CLIENT_INFO: JsonObject = {"name": "mcp-gateway", "version": __version__}
ENVELOPE_PREFIX = "io.modelcontextprotocol/"


class UpstreamError(Exception):
    """The upstream could not answer (transport failure, protocol violation)."""


class UpstreamClosed(UpstreamError):
    """The connection is gone; the supervisor will reconnect."""


class UpstreamUnreachable(UpstreamError):
    """The request reached no live session: the connection was gone, could not be made, or the
    upstream refused it unseen (an expired session). It did not act on it, so a retry is safe."""


class UpstreamRequestTimeout(UpstreamError):
    """No answer within the configured time."""


RELAYED_CAPABILITIES: JsonObject = {"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {}}
"""What the gateway declares to a 2025-11-25 upstream: it relays these requests to the caller of the
call they belong to (a caller that cannot answer gets the upstream a JSON-RPC error at once)."""


def initialize_params() -> JsonObject:
    return {
        "protocolVersion": LATEST_HANDSHAKE_VERSION,
        "capabilities": RELAYED_CAPABILITIES,
        "clientInfo": CLIENT_INFO,
    }


class ClientAsker(abc.ABC):
    """The downstream caller of one upstream request, as far as the upstream may turn to it:
    server-to-client requests (elicitation, sampling, roots) and, for a 2026-07-28 upstream, the
    capabilities and log level its request envelope declares on the caller's behalf."""

    capabilities: JsonObject
    """The client capabilities to declare for this call (2026 envelope): only what the caller has."""
    log_level: str | None
    """The ``io.modelcontextprotocol/logLevel`` to ask a 2026 upstream for (None: no log messages)."""

    @abc.abstractmethod
    async def ask(self, request: JsonObject) -> JsonObject:
        """Put one server-to-client request to the caller; the response's members (``{"result": ...}``
        or ``{"error": {...}}``), within a bounded time."""


class UpstreamConnection(abc.ABC):
    """One live session with one upstream server."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.protocol_version = LATEST_HANDSHAKE_VERSION
        self.server_info: JsonObject = {}
        self.capabilities: JsonObject = {}
        self.instructions: str | None = None
        self.modern = False
        """Speaking the 2026-07-28 era (stateless requests, each with its envelope)."""
        self.on_notification: Callable[[JsonObject], None] | None = None
        """Connection-level notifications (tools/list_changed, log messages without a request)."""
        self._closed = asyncio.Event()
        self.closed_reason: str | None = None

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _mark_closed(self, reason: str) -> None:
        if not self._closed.is_set():
            self.closed_reason = reason
            self._closed.set()

    @abc.abstractmethod
    async def open(self, timeout: float) -> None:
        """Connect (or spawn) and complete the MCP handshake."""

    @abc.abstractmethod
    async def request(
        self,
        method: str,
        params: JsonObject | None,
        *,
        timeout: float | None,
        on_notification: NotificationHandler | None = None,
        headers: dict[str, str] | None = None,
        client: ClientAsker | None = None,
        progress: bool = True,
    ) -> JsonObject:
        """Send one request and return the JSON-RPC response message (``result`` or ``error``).

        Raises `UpstreamUnreachable` (nothing was sent), `UpstreamRequestTimeout` or
        `UpstreamError` (sent, then failed: the upstream may have acted on it); cancelling the
        caller cancels the upstream request too. One failed request does not take the connection
        down; a dead transport (a stdio child that exited, an expired session) or the
        supervisor's health check does.

        ``client``: the downstream caller the upstream's requests during this call go to;
        ``progress``: ask for progress (a token) when ``on_notification`` is given.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection (and stop a child process)."""
