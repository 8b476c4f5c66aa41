"""Sessions of 2025-11-25 clients (``Mcp-Session-Id``).

A session belongs to the key that opened it: another key presenting its id
gets the same 404 as an unknown id. 2026-07-28 clients have no sessions.
Sessions live in this process; several replicas need sticky routing for
2025 clients (2026 clients need nothing).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from policies import Principal

JsonObject = dict[str, Any]


@dataclass(eq=False)
class Session:
    id: str
    principal: Principal
    protocol_version: str
    client_info: JsonObject
    client_capabilities: JsonObject
    last_seen: float = field(default_factory=time.monotonic)
    in_flight: dict[str | int, asyncio.Task[Any]] = field(default_factory=dict)
    cancelled_ids: set[str | int] = field(default_factory=set)
    stream_open: bool = False
    listed_signature: bytes | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def client_name(self) -> str | None:
        name = self.client_info.get("name")
        return name if isinstance(name, str) else None

    @property
    def client_version(self) -> str | None:
        version = self.client_info.get("version")
        return version if isinstance(version, str) else None


class SessionStore:
    def __init__(self, idle_timeout: float = 3600.0, max_sessions: int = 10_000) -> None:
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(
        self, principal: Principal, protocol_version: str, client_info: JsonObject, capabilities: JsonObject
    ) -> Session:
        if len(self._sessions) >= self.max_sessions:
            self.evict_idle(force_oldest=True)
        session = Session(secrets.token_hex(16), principal, protocol_version, client_info, capabilities)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, principal: Principal) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None or session.principal.key_id != principal.key_id:
            return None
        session.last_seen = time.monotonic()
        return session

    def close(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        session.closed.set()
        for task in session.in_flight.values():
            task.cancel()

    def evict_idle(self, force_oldest: bool = False) -> int:
        now = time.monotonic()
        stale = [
            s for s in self._sessions.values() if not s.stream_open and now - s.last_seen > self.idle_timeout
        ]
        if not stale and force_oldest and self._sessions:
            stale = [min(self._sessions.values(), key=lambda s: s.last_seen)]
        for session in stale:
            self.close(session)
        return len(stale)

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self.close(session)
