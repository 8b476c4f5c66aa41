"""Who is calling: bearer secret -> `Principal`, for the MCP endpoint and the model proxy alike.

Secrets are looked up by their SHA-256 digest and the digest is compared in
constant time. Keys from the policy file are fixed for the life of the
process, except that ``mcp-gateway keys revoke`` can revoke one in the
database; database keys and those revocations are reloaded every few seconds
(and at once, at most once a second, when an unknown secret arrives) so that a
created or revoked key takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway_common.keystore import active_keys, revoked_file_key_ids, utcnow
from policies import GatewayPolicy, Principal
from policies.secrets import digests_equal, hash_secret

logger = logging.getLogger("gateway_common.auth")


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: str
    principal: Principal
    expires_at: datetime | None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class KeyRing:
    def __init__(self, policy: GatewayPolicy, engine: Engine | None, refresh_seconds: float = 10.0) -> None:
        self.policy = policy
        self.engine = engine
        self.refresh_seconds = refresh_seconds
        self._declared: dict[str, _Entry] = {}
        """Every file key with a secret, revoked or not."""
        self._file: dict[str, _Entry] = {}
        """The file keys not revoked in the database: what requests are checked against."""
        self._db: dict[str, _Entry] = {}
        self._loaded_at = 0.0
        self._miss_refresh_at = 0.0
        self._lock = asyncio.Lock()
        self._load_file_keys()

    def _load_file_keys(self) -> None:
        for key in self.policy.virtual_keys:
            if key.disabled:
                continue
            digest = key.secret_sha256
            if digest is None and key.secret_env:
                secret = os.environ.get(key.secret_env)
                digest = hash_secret(secret) if secret else None
            if digest is None:
                continue
            principal = Principal(key.id, key.display_name, key.team, "file")
            expires = key.expires_at
            if expires is not None and expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            self._declared[digest] = _Entry(digest, principal, expires)
        self._file = dict(self._declared)

    def _principal_for_db_key(self, key_id: str, name: str | None, team: str | None) -> Principal | None:
        declared = self.policy.key(key_id)
        if declared is not None:
            if declared.disabled:
                return None
            return Principal(key_id, declared.display_name, declared.team, "database")
        return Principal(key_id, name or key_id, team, "database")

    def _load_db_keys(self) -> tuple[dict[str, _Entry], set[str]]:
        """The database's active secrets, and the ids of file keys revoked there."""
        if self.engine is None:
            return {}, set()
        entries = {}
        for record in active_keys(self.engine):
            principal = self._principal_for_db_key(record.key_id, record.name, record.team)
            if principal is not None:
                entries[record.secret_sha256] = _Entry(record.secret_sha256, principal, record.expires_at)
        return entries, revoked_file_key_ids(self.engine)

    async def refresh(self) -> None:
        async with self._lock:
            try:
                self._db, revoked = await asyncio.to_thread(self._load_db_keys)
            except SQLAlchemyError as exc:
                logger.error("could not reload keys from the database: %s", exc)
            else:
                self._file = {
                    digest: entry
                    for digest, entry in self._declared.items()
                    if entry.principal.key_id not in revoked
                }
            self._loaded_at = time.monotonic()

    def file_key_digests(self) -> frozenset[str]:
        """Digests of every file key's secret (revoked ones included): never usable as admin tokens."""
        return frozenset(self._declared)

    def holds(self, digest: str) -> bool:
        """Whether a digest belongs to a virtual key this ring knows (file, revoked file, or database)."""
        return digest in self._declared or digest in self._db

    async def authenticate(
        self, authorization_or_secret: str | None, *, raw: bool = False
    ) -> Principal | None:
        """The principal for a bearer header (or a raw secret with ``raw=True``), or None."""
        secret = authorization_or_secret if raw else bearer_token(authorization_or_secret)
        if not secret:
            return None
        digest = hash_secret(secret)
        now = time.monotonic()
        if now - self._loaded_at > self.refresh_seconds:
            await self.refresh()
        entry = self._file.get(digest) or self._db.get(digest)
        if entry is None and now - self._miss_refresh_at > 1.0 and self.engine is not None:
            self._miss_refresh_at = now
            await self.refresh()
            entry = self._db.get(digest)
        if entry is None or not digests_equal(entry.digest, digest):
            return None
        if entry.expires_at is not None and entry.expires_at <= utcnow():
            return None
        return entry.principal
