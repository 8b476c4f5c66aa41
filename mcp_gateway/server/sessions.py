"""Sessions of 2025-11-25 clients (``Mcp-Session-Id``).

A session belongs to the key that opened it: another key presenting its id
gets the same 404 as an unknown id. 2026-07-28 clients have no sessions.
Sessions live in this process; several replicas need sticky routing for
2025 clients (2026 clients need nothing).

Limits: a key holds at most ``max_sessions_per_key`` sessions (opening one more
closes that key's own least recently used one), and the process at most
``max_sessions`` (beyond it, once idle sessions have expired, a new session is
refused). One key can therefore never close another key's session. A session
keeps a few bounded fields (see `handshake`) and creates its asyncio objects
only when something waits on them, so an idle session costs well under 1 KB.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from mcp_gateway.errors import GatewayError
from mcp_gateway.server.handshake import ClientCapability
from mcp_gateway.subscriptions import ClientSurface
from policies import Principal

logger = logging.getLogger("mcp_gateway.mcp")

SESSION_LIMIT = -32012
"""JSON-RPC code of `SessionLimitReached` (implementation-defined range)."""
_FULL_SWEEP_INTERVAL = 1.0
"""At the global cap, idle sessions are looked for at most this often (the sweep visits every session)."""


class SessionLimitReached(GatewayError):
    """The process holds ``max_sessions`` sessions and none has expired: no new session for now."""

    code = SESSION_LIMIT
    http_status = 503

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The gateway holds its maximum of {limit} sessions (gateway.max_sessions); "
            "retry later, or use MCP-Protocol-Version 2026-07-28, which needs no session"
        )


class Session:
    __slots__ = (
        "_asking",
        "_cancelled_ids",
        "_closed_event",
        "capabilities",
        "client_name",
        "client_version",
        "id",
        "in_flight",
        "is_closed",
        "last_seen",
        "listed_signature",
        "log_level",
        "principal",
        "protocol_version",
        "stream_open",
        "surface",
    )

    def __init__(
        self,
        session_id: str,
        principal: Principal,
        protocol_version: str,
        client_name: str | None,
        client_version: str | None,
        capabilities: ClientCapability,
    ) -> None:
        self.id = session_id
        self.principal = principal
        self.protocol_version = protocol_version
        self.client_name = client_name
        """From ``clientInfo``, clipped (`handshake.client_string`)."""
        self.client_version = client_version
        self.capabilities = capabilities
        self.last_seen = time.monotonic()
        self.in_flight: dict[str | int, asyncio.Task[Any]] = {}
        self.stream_open = False
        self.listed_signature: bytes | None = None
        self.is_closed = False
        self.surface: ClientSurface | None = None
        """Resource subscriptions, updates for the GET stream, lists last fetched; made on first use."""
        self._cancelled_ids: set[str | int] | None = None
        self._closed_event: asyncio.Event | None = None
        self.log_level: str | None = "debug"
        """From ``logging/setLevel``: the least severe log message the client wants (2025: all until set)."""
        self._asking: dict[str, asyncio.Future[dict[str, Any]]] | None = None

    @property
    def client_info(self) -> dict[str, Any]:
        """The bounded ``clientInfo`` this session kept (name and version only)."""
        return {"name": self.client_name, "version": self.client_version}

    @property
    def cancelled_ids(self) -> set[str | int]:
        """Request ids the client cancelled (``notifications/cancelled``), created on first use."""
        if self._cancelled_ids is None:
            self._cancelled_ids = set()
        return self._cancelled_ids

    @property
    def closed(self) -> asyncio.Event:
        """Set once the session is closed; created on first use (by a GET stream waiting on it)."""
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
            if self.is_closed:
                self._closed_event.set()
        return self._closed_event

    def expect(self, request_id: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the client's answer to a request the gateway put to it (`client_requests`)."""
        if self._asking is None:
            self._asking = {}
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._asking[request_id] = waiter
        return waiter

    def forget(self, request_id: str) -> None:
        if self._asking is not None:
            self._asking.pop(request_id, None)

    def answer(self, message: dict[str, Any]) -> bool:
        """A response the client POSTed: True if it answered a request the gateway is waiting on."""
        request_id = message.get("id")
        waiter = self._asking.get(request_id) if self._asking and isinstance(request_id, str) else None
        if waiter is None or waiter.done():
            return False
        waiter.set_result(message)
        return True

    def surface_for(self, make: Callable[[], ClientSurface]) -> ClientSurface:
        """The session's `ClientSurface`, made with ``make`` the first time."""
        if self.surface is None:
            self.surface = make()
        return self.surface

    def mark_closed(self) -> None:
        self.is_closed = True
        if self.surface is not None:
            self.surface.close()
        if self._closed_event is not None:
            self._closed_event.set()
        for task in self.in_flight.values():
            task.cancel()
        for waiter in (self._asking or {}).values():
            if not waiter.done():
                waiter.set_result({"error": {"code": -32603, "message": "the client's session ended"}})


class SessionStore:
    def __init__(
        self,
        idle_timeout: float = 3600.0,
        max_sessions: int = 10_000,
        max_per_key: int = 256,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.max_per_key = max_per_key
        self._sessions: dict[str, Session] = {}
        self._by_key: dict[str, dict[str, Session]] = {}
        self._swept_full_at = -_FULL_SWEEP_INTERVAL

    def __len__(self) -> int:
        return len(self._sessions)

    def ids(self, key_id: str) -> set[str]:
        """The ids of one key's open sessions."""
        return set(self._by_key.get(key_id, ()))

    def create(
        self,
        principal: Principal,
        protocol_version: str,
        client_name: str | None,
        client_version: str | None,
        capabilities: ClientCapability,
    ) -> Session:
        """A new session for ``principal``; raises `SessionLimitReached` at the global cap."""
        own = self._by_key.get(principal.key_id)
        if own is not None and len(own) >= self.max_per_key:
            self._evict_own(principal.key_id, own, len(own) - self.max_per_key + 1)
        elif len(self._sessions) >= self.max_sessions:
            now = time.monotonic()
            if now - self._swept_full_at >= _FULL_SWEEP_INTERVAL:
                self._swept_full_at = now
                self.evict_idle()
            if len(self._sessions) >= self.max_sessions:
                raise SessionLimitReached(self.max_sessions)
        session = Session(
            secrets.token_hex(16), principal, protocol_version, client_name, client_version, capabilities
        )
        self._sessions[session.id] = session
        if own is None:
            own = self._by_key[principal.key_id] = {}
        own[session.id] = session
        return session

    def _evict_own(self, key_id: str, own: dict[str, Session], count: int) -> None:
        """Close ``count`` of one key's sessions: least recently used first, busy ones (an open GET
        stream or requests in flight) last."""
        victims = sorted(own.values(), key=lambda s: (s.stream_open or bool(s.in_flight), s.last_seen))
        for session in victims[:count]:
            self.close(session)
            logger.info(
                "session %s of key %s closed: the key is at its limit of %d sessions "
                "(gateway.max_sessions_per_key)",
                session.id[:8],
                key_id,
                self.max_per_key,
            )

    def get(self, session_id: str, principal: Principal) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None or session.principal.key_id != principal.key_id:
            return None
        session.last_seen = time.monotonic()
        return session

    def close(self, session: Session) -> None:
        if self._sessions.pop(session.id, None) is not None:
            own = self._by_key.get(session.principal.key_id)
            if own is not None:
                own.pop(session.id, None)
                if not own:
                    del self._by_key[session.principal.key_id]
        session.mark_closed()

    def evict_idle(self) -> int:
        """Close sessions unused for ``idle_timeout`` (never one with an open GET stream)."""
        now = time.monotonic()
        stale = [
            s for s in self._sessions.values() if not s.stream_open and now - s.last_seen > self.idle_timeout
        ]
        for session in stale:
            self.close(session)
        return len(stale)

    def close_keys(self, key_ids: frozenset[str]) -> int:
        """Close every session of these keys (they were revoked): requests in flight on them are
        cancelled and their GET streams end. Returns how many were closed."""
        closed = 0
        for key_id in key_ids:
            for session in list(self._by_key.get(key_id, {}).values()):
                self.close(session)
                closed += 1
                logger.info("session %s of key %s closed: the key is no longer valid", session.id[:8], key_id)
        return closed

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self.close(session)
