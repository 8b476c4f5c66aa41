"""Signed session ids: a 2025-11-25 session any replica can serve.

Why signed ids rather than session state in Redis: what a replica needs to serve a
session is small and fixed when it opens (the key it belongs to, the negotiated
protocol version, the client's name and version, the capability flags: `handshake`),
so it fits in the id itself. A replica that is handed an id it does not hold checks
the signature and rebuilds the session on the spot: no round trip to Redis on any
request, nothing lost when Redis is down, nothing to expire or clean up there, and
the per-key and per-process session limits stay what they are, per replica. What an
id cannot carry is what happens during a session: requests in flight stay on the replica
that has them, and its resource subscriptions are recorded in Redis apart
(`subscription_ledger`) and restored by the replica that rebuilds the session.

An id reads ``<nonce>.<claims>.<mac>``: a random nonce (unique per session), the
claims as base64url JSON, and HMAC-SHA256 over both with a secret the replicas share
(``gateway.session_secret_env``), truncated to 128 bits. Without a shared secret each
process signs with a random secret of its own and never rebuilds an id it does not
hold, exactly the single-process behaviour. Every request still authenticates with
its key, and a rebuilt session must belong to that key; a key whose secret stopped
working after the id was issued (revoked, expired) gets no rebuilt session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from mcp_gateway.server.handshake import ClientCapability
from policies.bounds import clip

MAX_SESSION_ID_CHARS = 1024
"""Longer ``Mcp-Session-Id`` values are not looked at (ours are a few hundred characters at most)."""
CLIENT_FIELD_CHARS = 64
"""The client's name and version are kept this long in an id."""
MIN_SECRET_CHARS = 32
_DOMAIN = b"mcpgw-session-id-v1\x00"


@dataclass(frozen=True)
class SessionClaims:
    """What a session id says about its session."""

    key_id: str
    protocol_version: str
    client_name: str | None
    client_version: str | None
    capabilities: ClientCapability
    issued_at: float
    """Seconds since the epoch when the session opened (the issuing replica's clock)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionIds:
    """Issues and reads signed session ids."""

    def __init__(self, secret: bytes, *, shared: bool, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(_DOMAIN + secret).digest()
        self.shared = shared
        """Whether other replicas hold the same secret (then an unknown valid id is rebuilt)."""
        self.clock = clock

    @classmethod
    def per_process(cls) -> SessionIds:
        return cls(secrets.token_bytes(32), shared=False)

    @classmethod
    def from_environment(
        cls, variable: str | None, environ: Mapping[str, str]
    ) -> tuple[SessionIds, str | None]:
        """The ids for ``gateway.session_secret_env``, and a warning for an operator (or None)."""
        if variable is None:
            return cls.per_process(), None
        value = environ.get(variable, "")
        if not value:
            unset = (
                f"gateway.session_secret_env: environment variable {variable} is not set; 2025-11-25 "
                "sessions are signed with a secret of this process only (other replicas cannot serve them)"
            )
            return cls.per_process(), unset
        warning: str | None = None
        if len(value) < MIN_SECRET_CHARS:
            warning = (
                f"gateway.session_secret_env: {variable} holds fewer than {MIN_SECRET_CHARS} characters; "
                "use a long random value (e.g. `openssl rand -hex 32`)"
            )
        return cls(value.encode(), shared=True), warning

    def _mac(self, signed: str) -> str:
        return _b64(hmac.new(self._key, signed.encode("ascii"), hashlib.sha256).digest()[:16])

    def issue(
        self,
        key_id: str,
        protocol_version: str,
        client_name: str | None,
        client_version: str | None,
        capabilities: ClientCapability,
    ) -> str:
        claims = [
            key_id,
            protocol_version,
            clip(client_name, CLIENT_FIELD_CHARS),
            clip(client_version, CLIENT_FIELD_CHARS),
            int(capabilities),
            int(self.clock()),
        ]
        signed = f"{secrets.token_urlsafe(12)}.{_b64(orjson.dumps(claims))}"
        return f"{signed}.{self._mac(signed)}"

    def read(self, session_id: str) -> SessionClaims | None:
        """The claims of an id this secret signed; None for anything else (malformed, forged, altered)."""
        if len(session_id) > MAX_SESSION_ID_CHARS or session_id.count(".") != 2:
            return None
        signed, _, mac = session_id.rpartition(".")
        if not hmac.compare_digest(self._mac(signed), mac):
            return None
        try:
            claims = orjson.loads(_unb64(signed.partition(".")[2]))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        if not (isinstance(claims, list) and len(claims) == 6):
            return None
        key_id, version, name, client_version, flags, issued = claims
        if not (
            isinstance(key_id, str)
            and isinstance(version, str)
            and isinstance(name, str | None)
            and isinstance(client_version, str | None)
            and isinstance(flags, int)
            and isinstance(issued, int)
        ):
            return None
        capabilities = ClientCapability(flags & int(_ALL_FLAGS))
        return SessionClaims(key_id, version, name, client_version, capabilities, float(issued))


_ALL_FLAGS = ClientCapability(0)
for _flag in ClientCapability:
    _ALL_FLAGS |= _flag
