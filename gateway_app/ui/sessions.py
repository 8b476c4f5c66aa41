"""The dashboard's sessions: a table in this process's memory, keyed by the SHA-256 of the cookie.

A session holds who logged in (the admin token's id and role) and the token's digest, never the
token: every request re-identifies the digest against the policy in force, so a token removed or
re-roled by a reload ends its sessions at their next request. Sessions end on logout, after
`IDLE_SECONDS` without a request, or `LIFETIME_SECONDS` after login, whichever comes first; a
restart ends them all (log in again).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from policies.admin import AdminIdentity
from policies.secrets import hash_secret

LIFETIME_SECONDS = 12 * 3600.0
IDLE_SECONDS = 3600.0
MAX_SESSIONS = 1000
"""Beyond this many, logging in ends the session that was used least recently."""


@dataclass
class UiSession:
    identity: AdminIdentity
    token_digest: str
    """The SHA-256 of the admin token that opened it (to re-identify; never the token)."""
    csrf: str
    """Every form of this session carries it; every POST must send it back."""
    created: float
    last_seen: float


class SessionTable:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        lifetime: float = LIFETIME_SECONDS,
        idle: float = IDLE_SECONDS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.idle = idle
        self.max_sessions = max_sessions
        self._by_digest: dict[str, UiSession] = {}

    def __len__(self) -> int:
        return len(self._by_digest)

    def open(self, identity: AdminIdentity, token_digest: str) -> tuple[str, UiSession]:
        """A new session; returns the cookie value (known to the browser only) and the session."""
        self._sweep()
        while len(self._by_digest) >= self.max_sessions:
            oldest = min(self._by_digest, key=lambda d: self._by_digest[d].last_seen)
            del self._by_digest[oldest]
        cookie = secrets.token_urlsafe(32)
        now = self.clock()
        session = UiSession(identity, token_digest, secrets.token_urlsafe(32), now, now)
        self._by_digest[hash_secret(cookie)] = session
        return cookie, session

    def get(self, cookie: str | None) -> UiSession | None:
        """The live session of this cookie (its idle time restarts), or None."""
        if not cookie or len(cookie) > 200:
            return None
        digest = hash_secret(cookie)
        session = self._by_digest.get(digest)
        if session is None:
            return None
        now = self.clock()
        if now - session.created >= self.lifetime or now - session.last_seen >= self.idle:
            del self._by_digest[digest]
            return None
        session.last_seen = now
        return session

    def end(self, cookie: str | None) -> None:
        if cookie and len(cookie) <= 200:
            self._by_digest.pop(hash_secret(cookie), None)

    def _sweep(self) -> None:
        now = self.clock()
        for digest, session in list(self._by_digest.items()):
            if now - session.created >= self.lifetime or now - session.last_seen >= self.idle:
                del self._by_digest[digest]
