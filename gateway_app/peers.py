"""What this process tells the other replicas, and what it does when they tell it something.

Changes travel on the change bus (`gateway_common.signals`; Redis pub/sub with
``counters.backend: redis``, nobody to tell otherwise). Every message says what to
re-read, never the new state, and never a secret:

- ``keys``: the database's keys changed (the process that made the change or first saw
  the key change counter move says so; ``mcp-gateway keys ... --config`` does too). The
  others read their keys again at once, which ends the sessions and streams of a key
  that stopped working, as the local path does (`PolicyState.on_keys_ended`). The
  one-second database poll stays as the fallback.
- ``policy``: a reload through this replica's SIGHUP or admin API read a valid file
  with this SHA-256. The others reload their own file expecting the same digest; one
  whose file differs refuses and records why (replicas must share the file's content).
- ``session_ended``: a client ended its 2025-11-25 session here (DELETE); the others
  close it if they hold it and never rebuild it from its signed id.
- ``session_subscriptions``: a 2025-11-25 session's resource subscriptions changed here; the
  others that hold the session read them again (from Redis) at its next request there.
- `RESYNC` (from the bus itself after a (re)connect, when messages may have been
  missed): read the keys again, every held session's subscriptions at its next request, and
  reload the policy file if it changed since read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway_app.reload import Reloader
from gateway_app.reload_log import ReloadOutcome, ReloadRecord
from gateway_common.policy_state import PolicyState
from gateway_common.signals import RESYNC, Change, ChangeBus
from mcp_gateway.server.session_ids import MAX_SESSION_ID_CHARS
from mcp_gateway.server.sessions import SessionStore
from policies import GatewayPolicy

logger = logging.getLogger("gateway_app.peers")

KEYS, POLICY, SESSION_ENDED = "keys", "policy", "session_ended"
SESSION_SUBSCRIPTIONS = "session_subscriptions"
_ANNOUNCED_TRIGGERS = ("signal", "api")
_ANNOUNCED_OUTCOMES = (ReloadOutcome.APPLIED, ReloadOutcome.UNCHANGED)


class Peers:
    def __init__(
        self, bus: ChangeBus, state: PolicyState, reloader: Reloader, sessions: SessionStore
    ) -> None:
        self.bus = bus
        self.state = state
        self.reloader = reloader
        self.sessions = sessions
        self._tasks: set[asyncio.Task[Any]] = set()

    def attach(self) -> None:
        """Subscribe to the bus and publish this process's own changes on it."""
        self.bus.subscribe(self.hear)
        self.state.on_key_change_seen(lambda version: self._publish(KEYS, {"version": version}))
        self.sessions.on_end(lambda session_id: self._publish(SESSION_ENDED, {"id": session_id}))
        self.sessions.on_subscriptions_changed(
            lambda session_id: self._publish(SESSION_SUBSCRIPTIONS, {"id": session_id})
        )
        self.reloader.on_reloaded(self.announce_reload)

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self.bus.publish(kind, payload), name=f"publish-{kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def announce_reload(self, record: ReloadRecord, digest: str | None) -> None:
        if (
            digest is not None
            and record.trigger in _ANNOUNCED_TRIGGERS
            and record.outcome in _ANNOUNCED_OUTCOMES
        ):
            await self.bus.publish(POLICY, {"sha256": digest})

    async def hear(self, change: Change) -> None:
        payload = change.payload
        if change.kind == KEYS:
            version = payload.get("version")
            if not isinstance(version, int) or version != self.state.change_version:
                await self.state.refresh_keys(announce=False)
        elif change.kind == POLICY:
            digest = payload.get("sha256")
            if isinstance(digest, str) and len(digest) == 64:
                await self._follow_reload(digest, change.origin)
        elif change.kind == SESSION_ENDED:
            session_id = payload.get("id")
            if isinstance(session_id, str) and len(session_id) <= MAX_SESSION_ID_CHARS:
                self.sessions.forget(session_id)
        elif change.kind == SESSION_SUBSCRIPTIONS:
            session_id = payload.get("id")
            if isinstance(session_id, str) and len(session_id) <= MAX_SESSION_ID_CHARS:
                self.sessions.resync_subscriptions(session_id)
        elif change.kind == RESYNC:
            await self.state.refresh_keys(announce=False)
            self.sessions.resync_subscriptions()
            source = self.reloader.source
            if source is not None and source.current_digest() != self.reloader.last_digest:
                logger.info("policy file changed while changes could not be heard: reloading it")
                await self.reloader.reload("peer")
        else:
            logger.debug("ignored a change of kind %r from %s", change.kind, change.origin)

    async def _follow_reload(self, digest: str, origin: str) -> None:
        if digest == self.reloader.last_digest:
            return  # this content was read here already (applied, or refused for reasons of this replica)
        logger.info("replica %s reloaded its policy file: reloading this one's", origin)
        await self.reloader.reload("peer", expected_digest=digest, origin=origin)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def announce_key_change(policy: GatewayPolicy | None) -> bool:
    """From a ``keys`` command: tell running replicas at once that the keys changed (they would see
    it on their next database poll anyway). Only with a policy whose counters are in Redis."""
    if policy is None or policy.counters.backend != "redis":
        return False
    from gateway_common.signals.redis_bus import publish_once

    return publish_once(policy.counters, KEYS, {})
