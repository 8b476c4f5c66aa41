"""The current policy snapshot of this process, and how it is renewed.

Both front doors authenticate through `PolicyState.authenticate`, which returns
the caller's principal together with the snapshot that recognised it; the
request then takes every decision from that same snapshot. A new snapshot
replaces the current one in a single assignment when the keys in the database
change or when a new policy is swapped in. Requests already running keep the
snapshot they started with.

Key changes are noticed within about a second: `watch_keys` (a task of the app)
polls the database's key change counter (``key_changes``, bumped by every
``mcp-gateway keys`` change) once a second and reloads the keys when it moved,
and reloads them every ``gateway.key_refresh_seconds`` regardless. An unknown
secret also checks the counter at once (at most once a second), so a key
created a moment ago works on its first request.

When a swap takes a working secret away (revoked, expired by an update, removed
from the file), the listeners registered with `on_keys_ended` hear which keys:
the /mcp front door closes their sessions, and their streams end.

Other processes on the same database hear of a key change sooner through the change
bus (`gateway_common.signals`): the process that notices the counter move first tells
the listeners of `on_key_change_seen` (which publish it), and the others call
`refresh_keys` when they hear it. The poll stays: it is all there is without Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway_common.keystore import key_change_version, load_stored_keys, revoked_file_key_ids
from policies import GatewayPolicy, Principal
from policies.counters import Clock
from policies.secrets import hash_secret
from policies.snapshot import PolicySnapshot, StoredKey, build_snapshot, ended_key_ids

logger = logging.getLogger("gateway_common.policy")

MISS_REFRESH_SECONDS = 1.0
"""An unknown secret checks the database's key change counter at most this often."""
KEY_POLL_SECONDS = 1.0
"""How often `watch_keys` reads the key change counter."""
_ENDED_REMEMBERED = 10_000
"""Keys whose end is remembered for `ended_since` (the oldest are forgotten beyond this)."""

KeysEnded = Callable[[frozenset[str]], object]
ChangeSeen = Callable[[int], object]


@dataclass(frozen=True)
class PreparedSnapshot:
    """A snapshot built for a policy swap, and the database keys it was built with."""

    snapshot: PolicySnapshot
    keys: tuple[tuple[StoredKey, ...], frozenset[str]]


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
        self._change_version: int | None = None
        self._loaded_at = 0.0
        self._miss_refresh_at = 0.0
        self._watching = False
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._ended_listeners: list[KeysEnded] = []
        self._end_mark = 0
        self._ended_at: dict[str, int] = {}
        self._ended_wall: dict[str, float] = {}
        self._seen_listeners: list[ChangeSeen] = []
        self.current: PolicySnapshot = self._build(policy, log=True)

    @property
    def policy(self) -> GatewayPolicy:
        return self.current.policy

    @property
    def changed(self) -> asyncio.Event:
        """Set (and replaced) at the next swap; long-lived streams wait on it."""
        return self._changed

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _build(
        self,
        policy: GatewayPolicy,
        *,
        log: bool,
        keys: tuple[tuple[StoredKey, ...], frozenset[str]] | None = None,
    ) -> PolicySnapshot:
        stored, revoked = keys if keys is not None else (self._stored, self._revoked)
        snapshot, warnings = build_snapshot(
            policy,
            version=next(self._versions),
            environ=self._environ,
            stored_keys=stored,
            revoked_file_keys=revoked,
            clock=self.clock,
        )
        if log:
            for warning in warnings:
                logger.warning("%s", warning)
        return snapshot

    def _swap(self, snapshot: PolicySnapshot) -> None:
        old, self.current = self.current, snapshot
        ended = ended_key_ids(old, snapshot, self._now())
        if ended:
            self._end_mark += 1
            wall = time.time()  # wall time, as in session ids other replicas issue (not the injected clock)
            for key_id in ended:
                self._ended_at.pop(key_id, None)
                self._ended_at[key_id] = self._end_mark
                self._ended_wall.pop(key_id, None)
                self._ended_wall[key_id] = wall
            while len(self._ended_at) > _ENDED_REMEMBERED:
                del self._ended_at[next(iter(self._ended_at))]
            while len(self._ended_wall) > _ENDED_REMEMBERED:
                del self._ended_wall[next(iter(self._ended_wall))]
            logger.info("keys no longer valid: %s", ", ".join(sorted(ended)))
            for listener in self._ended_listeners:
                try:
                    listener(ended)
                except Exception:
                    logger.exception("a listener failed on the end of keys %s", sorted(ended))
        self._changed.set()
        self._changed = asyncio.Event()

    def swap_policy(self, policy: GatewayPolicy) -> PolicySnapshot:
        """Build a snapshot of ``policy`` with the keys last read from the database and make it current."""
        snapshot = self._build(policy, log=True)
        self._swap(snapshot)
        return snapshot

    # -- keys that end ---------------------------------------------------------------------

    def on_keys_ended(self, listener: KeysEnded) -> None:
        """Call ``listener`` with the ids of keys a swap took a working secret from."""
        self._ended_listeners.append(listener)

    @property
    def end_mark(self) -> int:
        """A mark to give `ended_since` later (read it when something starts serving a key)."""
        return self._end_mark

    def ended_since(self, key_id: str, mark: int) -> bool:
        """Whether a swap after ``mark`` took a working secret of ``key_id`` away."""
        return self._ended_at.get(key_id, 0) > mark

    def ended_after(self, key_id: str, when: float) -> bool:
        """Whether this process saw a working secret of ``key_id`` taken away after ``when`` (seconds
        since the epoch): a session another replica opened before that must not be rebuilt here."""
        return self._ended_wall.get(key_id, -1.0) >= when

    def on_key_change_seen(self, listener: ChangeSeen) -> None:
        """Call ``listener`` with the database's key change counter whenever this process saw it move
        (its poll, an unknown secret, a change it made itself), not when told to by another process."""
        self._seen_listeners.append(listener)

    @property
    def change_version(self) -> int | None:
        """The database's key change counter as last read (None: not read yet)."""
        return self._change_version

    def prepare_policy(self, policy: GatewayPolicy) -> PreparedSnapshot:
        """`swap_policy` in two steps, the costly one first and safe in a worker thread: build a
        snapshot of ``policy`` with the keys last read from the database; `install` makes it current."""
        keys = (self._stored, self._revoked)
        return PreparedSnapshot(self._build(policy, log=True, keys=keys), keys)

    def install(self, prepared: PreparedSnapshot) -> PolicySnapshot:
        """Make a prepared snapshot current; if the database's keys were read again since it was
        built, it is built again with them (here, on the caller's thread)."""
        snapshot = prepared.snapshot
        if prepared.keys[0] is not self._stored or prepared.keys[1] is not self._revoked:
            snapshot = self._build(snapshot.policy, log=False)
        self._swap(snapshot)
        return snapshot

    # -- keys in the database --------------------------------------------------------------

    def _read_keys(self) -> tuple[int, tuple[StoredKey, ...], frozenset[str]]:
        assert self.engine is not None
        version = key_change_version(self.engine)  # first: a change landing meanwhile is seen next time
        stored = load_stored_keys(self.engine, self._now())
        return version, stored, frozenset(revoked_file_key_ids(self.engine))

    async def refresh_keys(self, *, announce: bool = True) -> None:
        """Read the database's keys and revocations; swap in a new snapshot if they changed. If the key
        change counter moved since last read, the `on_key_change_seen` listeners hear it (unless
        ``announce`` is False: another process told this one, and has told the others too)."""
        if self.engine is None:
            return
        moved: int | None = None
        async with self._lock:
            try:
                version, stored, revoked = await asyncio.to_thread(self._read_keys)
            except SQLAlchemyError as exc:
                logger.error("could not reload keys from the database: %s", exc)
            else:
                if self._change_version is not None and version != self._change_version:
                    moved = version
                self._change_version = version
                if stored != self._stored or revoked != self._revoked:
                    self._stored, self._revoked = stored, revoked
                    self._swap(self._build(self.current.policy, log=False))
            self._loaded_at = time.monotonic()
        if moved is not None and announce:
            for listener in self._seen_listeners:
                try:
                    listener(moved)
                except Exception:
                    logger.exception("a listener failed on the key change %d", moved)

    async def refresh_if_changed(self) -> bool:
        """Reload the keys if the database's key change counter moved; True if it did."""
        if self.engine is None:
            return False
        version = await asyncio.to_thread(key_change_version, self.engine)
        if version == self._change_version:
            return False
        await self.refresh_keys()
        return True

    async def watch_keys(self, poll_seconds: float = KEY_POLL_SECONDS) -> None:
        """Run for the life of the app: reload keys when the change counter moves (polled every
        ``poll_seconds``, or every ``gateway.key_refresh_seconds`` if that is shorter) and every
        ``gateway.key_refresh_seconds`` in any case."""
        if self.engine is None:
            return
        self._watching = True
        failing = False
        try:
            while True:
                await asyncio.sleep(min(poll_seconds, self.current.policy.gateway.key_refresh_seconds))
                try:
                    if time.monotonic() - self._loaded_at >= self.current.policy.gateway.key_refresh_seconds:
                        await self.refresh_keys()
                    else:
                        await self.refresh_if_changed()
                except SQLAlchemyError as exc:
                    if not failing:
                        logger.error(
                            "cannot read key changes from the database (retrying every second): %s", exc
                        )
                    failing = True
                else:
                    if failing:
                        logger.info("reading key changes from the database again")
                    failing = False
        finally:
            self._watching = False

    # -- requests --------------------------------------------------------------------------

    async def authenticate(self, secret: str | None) -> tuple[Principal | None, PolicySnapshot]:
        """The caller behind ``secret`` and the snapshot every decision of its request comes from."""
        now = time.monotonic()
        if not self._watching and now - self._loaded_at > self.current.policy.gateway.key_refresh_seconds:
            await self.refresh_keys()
        snapshot = self.current
        if not secret:
            return None, snapshot
        digest = hash_secret(secret)
        principal = snapshot.principal_for(digest)
        if (
            principal is None
            and self.engine is not None
            and not snapshot.knows_digest(digest)
            and now - self._miss_refresh_at > MISS_REFRESH_SECONDS
        ):
            self._miss_refresh_at = now
            try:
                changed = await self.refresh_if_changed()
            except SQLAlchemyError as exc:
                logger.error("could not read key changes from the database: %s", exc)
                changed = False
            if changed:
                snapshot = self.current
                principal = snapshot.principal_for(digest)
        return principal, snapshot
