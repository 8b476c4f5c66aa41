"""Sessions of 2025-11-25 clients (``Mcp-Session-Id``).

A session belongs to the key that opened it: another key presenting its id
gets the same 404 as an unknown id. 2026-07-28 clients have no sessions.
Sessions live in this process, under signed ids (`session_ids`): with a secret the
replicas share, a replica handed a valid id it does not hold rebuilds the session
(`get`), so no sticky routing is needed. A session the client ended (DELETE) is
remembered as ended (`end`, and on the other replicas `forget`, told by the change
bus) so that its id is never rebuilt; one closed for idleness or the per-key cap is
rebuilt if its client comes back (its id is still valid; the caps still hold).

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
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mcp_gateway.errors import GatewayError
from mcp_gateway.server.handshake import ClientCapability
from mcp_gateway.server.session_ids import SessionIds
from mcp_gateway.subscriptions import ClientSurface
from policies import Principal

logger = logging.getLogger("mcp_gateway.mcp")

SESSION_LIMIT = -32012
"""JSON-RPC code of `SessionLimitReached` (implementation-defined range)."""
_FULL_SWEEP_INTERVAL = 1.0
"""At the global cap, idle sessions are looked for at most this often (the sweep visits every session)."""
ENDED_REMEMBERED = 100_000
"""Ids of sessions their clients ended, kept so they are never rebuilt (the oldest forgotten beyond)."""


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
        "restore_pending",
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
        self.restore_pending = False
        """Its resource subscriptions here must be read again from the ledger at its next request
        (`resources.restore_subscriptions`): it was just rebuilt from its signed id, or another
        replica changed them."""

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
        *,
        ids: SessionIds | None = None,
        key_ended_after: Callable[[str, float], bool] | None = None,
    ) -> None:
        """``key_ended_after(key_id, when)``: whether that key stopped working after ``when`` (then a
        session of it opened before is not rebuilt)."""
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.max_per_key = max_per_key
        self.signer = ids or SessionIds.per_process()
        self.key_ended_after = key_ended_after or (lambda key_id, when: False)
        self._sessions: dict[str, Session] = {}
        self._by_key: dict[str, dict[str, Session]] = {}
        self._swept_full_at = -_FULL_SWEEP_INTERVAL
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._end_listeners: list[Callable[[str], object]] = []
        self._subscription_listeners: list[Callable[[str], object]] = []
        self.rebuilt = 0
        """Sessions rebuilt from their signed id (opened on another replica, or closed here for idleness)."""

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
        session_id = self.signer.issue(
            principal.key_id, protocol_version, client_name, client_version, capabilities
        )
        return self._add(session_id, principal, protocol_version, client_name, client_version, capabilities)

    def _add(
        self,
        session_id: str,
        principal: Principal,
        protocol_version: str,
        client_name: str | None,
        client_version: str | None,
        capabilities: ClientCapability,
    ) -> Session:
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
        session = Session(session_id, principal, protocol_version, client_name, client_version, capabilities)
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
        """``principal``'s session of this id: held here, or rebuilt from a valid signed id when the
        replicas share the secret. Raises `SessionLimitReached` when a rebuild meets the global cap."""
        session = self._sessions.get(session_id)
        if session is None:
            return self._rebuild(session_id, principal) if self.signer.shared else None
        if session.principal.key_id != principal.key_id:
            return None
        session.last_seen = time.monotonic()
        return session

    def _rebuild(self, session_id: str, principal: Principal) -> Session | None:
        claims = self.signer.read(session_id)
        if (
            claims is None
            or claims.key_id != principal.key_id
            or session_id in self._ended
            or self.key_ended_after(claims.key_id, claims.issued_at)
        ):
            return None
        session = self._add(
            session_id,
            principal,
            claims.protocol_version,
            claims.client_name,
            claims.client_version,
            claims.capabilities,
        )
        self.rebuilt += 1
        session.restore_pending = True
        logger.info("session %s of key %s rebuilt from its signed id", session_id[:8], principal.key_id)
        return session

    def on_subscriptions_changed(self, listener: Callable[[str], object]) -> None:
        """Call ``listener(session_id)`` when a session's resource subscriptions change here (to tell
        the other replicas, whose copy of the session must read them again)."""
        self._subscription_listeners.append(listener)

    def subscriptions_changed(self, session_id: str) -> None:
        for listener in self._subscription_listeners:
            try:
                listener(session_id)
            except Exception:
                logger.exception("a session subscription listener failed")

    def resync_subscriptions(self, session_id: str | None = None) -> None:
        """Another replica changed this session's subscriptions (None: changes may have been missed,
        so every session's): read them again at its next request here."""
        sessions = self._sessions.values() if session_id is None else [self._sessions.get(session_id)]
        for session in sessions:
            if session is not None:
                session.restore_pending = True

    def on_end(self, listener: Callable[[str], object]) -> None:
        """Call ``listener(session_id)`` when a client ends its session here (to tell the other replicas)."""
        self._end_listeners.append(listener)

    def end(self, session: Session) -> None:
        """The client ended its session (DELETE): close it, never rebuild it, tell the listeners."""
        self.close(session)
        self._remember_ended(session.id)
        for listener in self._end_listeners:
            try:
                listener(session.id)
            except Exception:
                logger.exception("a listener failed on the end of session %s", session.id[:8])

    def forget(self, session_id: str) -> None:
        """Another replica's client ended this session: close it here if held, and never rebuild it."""
        self._remember_ended(session_id)
        session = self._sessions.get(session_id)
        if session is not None:
            self.close(session)

    def _remember_ended(self, session_id: str) -> None:
        self._ended[session_id] = None
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)

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
