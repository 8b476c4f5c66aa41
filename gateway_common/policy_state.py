"""The current policy snapshot of this process, and how it is renewed.

Both front doors authenticate through `PolicyState.authenticate`, which returns
the caller's principal together with the snapshot that recognised it; the
request then takes every decision from that same snapshot. A new snapshot
replaces the current one in a single assignment when the keys in the database
change (checked every ``gateway.key_refresh_seconds``, and at once, at most once
a second, when an unknown secret arrives) or when a new policy is swapped in.
Requests already running keep the snapshot they started with.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Mapping

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway_common.keystore import active_keys, revoked_file_key_ids
from policies import GatewayPolicy, Principal
from policies.counters import Clock
from policies.snapshot import PolicySnapshot, StoredKey, build_snapshot

logger = logging.getLogger("gateway_common.policy")

MISS_REFRESH_SECONDS = 1.0
"""An unknown secret reloads the database's keys at most this often."""


class PolicyState:
    def __init__(
        self,
        policy: GatewayPolicy,
        engine: Engine | None,
        *,
        clock: Clock,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._environ = os.environ if environ is None else environ
        self._versions = itertools.count(1)
        self._stored: tuple[StoredKey, ...] = ()
        self._revoked: frozenset[str] = frozenset()
        self._loaded_at = 0.0
        self._miss_refresh_at = 0.0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.current: PolicySnapshot = self._build(policy, log=True)

    @property
    def policy(self) -> GatewayPolicy:
        return self.current.policy

    @property
    def changed(self) -> asyncio.Event:
        """Set (and replaced) at the next swap; long-lived streams wait on it."""
        return self._changed

    def _build(self, policy: GatewayPolicy, *, log: bool) -> PolicySnapshot:
        snapshot, warnings = build_snapshot(
            policy,
            version=next(self._versions),
            environ=self._environ,
            stored_keys=self._stored,
            revoked_file_keys=self._revoked,
            clock=self.clock,
        )
        if log:
            for warning in warnings:
                logger.warning("%s", warning)
        return snapshot

    def _swap(self, snapshot: PolicySnapshot) -> None:
        self.current = snapshot
        self._changed.set()
        self._changed = asyncio.Event()

    def swap_policy(self, policy: GatewayPolicy) -> PolicySnapshot:
        """Build a snapshot of ``policy`` with the keys last read from the database and make it current."""
        snapshot = self._build(policy, log=True)
        self._swap(snapshot)
        return snapshot

    # -- keys in the database --------------------------------------------------------------

    def _read_keys(self) -> tuple[tuple[StoredKey, ...], frozenset[str]]:
        assert self.engine is not None
        stored = tuple(
            StoredKey(r.key_id, r.name, r.team, r.secret_sha256, r.expires_at)
            for r in active_keys(self.engine)
        )
        return stored, frozenset(revoked_file_key_ids(self.engine))

    async def refresh_keys(self) -> None:
        """Read the database's keys and revocations; swap in a new snapshot if they changed."""
        if self.engine is None:
            return
        async with self._lock:
            try:
                stored, revoked = await asyncio.to_thread(self._read_keys)
            except SQLAlchemyError as exc:
                logger.error("could not reload keys from the database: %s", exc)
            else:
                if stored != self._stored or revoked != self._revoked:
                    self._stored, self._revoked = stored, revoked
                    self._swap(self._build(self.current.policy, log=False))
            self._loaded_at = time.monotonic()

    # -- requests --------------------------------------------------------------------------

    async def authenticate(self, secret: str | None) -> tuple[Principal | None, PolicySnapshot]:
        """The caller behind ``secret`` and the snapshot every decision of its request comes from."""
        now = time.monotonic()
        if now - self._loaded_at > self.current.policy.gateway.key_refresh_seconds:
            await self.refresh_keys()
        snapshot = self.current
        if not secret:
            return None, snapshot
        principal = snapshot.identify(secret)
        if (
            principal is None
            and self.engine is not None
            and now - self._miss_refresh_at > MISS_REFRESH_SECONDS
        ):
            self._miss_refresh_at = now
            await self.refresh_keys()
            snapshot = self.current
            principal = snapshot.identify(secret)
        return principal, snapshot
