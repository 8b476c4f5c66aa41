"""Keeps one upstream alive: connect, list what it offers, watch it, reconnect with backoff.

An upstream that fails to start, dies or stops answering never takes the
gateway down. While it is away its last-known tools, resources and prompts stay
in the catalogue (a restart costs clients no list refetch), calls to them get a
retryable "server X is unavailable" error, and it comes back by itself once it
answers again; a list changes only when its fresh copy differs.

The supervisor also routes what the upstream announces: a list_changed makes it
fetch that list again, a ``notifications/resources/updated`` goes to the gateway's
subscribers (`on_resource_updated`), and it keeps the upstream's resource
subscriptions equal to what the gateway's clients want (`sync_subscriptions`),
again after every reconnect.

Only a dead transport (a stdio child that exited, an expired HTTP session) or a
failed health check takes a server down. A call that fails on the way (a cut
HTTP response) fails that call alone and asks for an early health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from mcp_gateway.upstream.base import JsonObject, UpstreamConnection, UpstreamError
from mcp_gateway.upstream.http import HttpTransport
from mcp_gateway.upstream.listing import CHANGED_LISTS, EMPTY, LIST_KINDS, Listing, ListKind, fetch_list
from mcp_gateway.upstream.session import JsonRpcSession
from mcp_gateway.upstream.sse_legacy import SseLegacyTransport
from mcp_gateway.upstream.stdio import StdioTransport
from policies import ServerConfig
from policies.servers import HttpServerConfig, SseServerConfig

logger = logging.getLogger("mcp_gateway.upstream")

State = Literal["starting", "ready", "backoff", "stopped"]
_SUBSCRIBE_TIMEOUT = 10.0
"""How long one resources/subscribe (or a 2026 re-listen) may take upstream."""


def make_connection(config: ServerConfig) -> UpstreamConnection:
    """One JSON-RPC session over the server's transport (stdio and HTTP+SSE speak the 2025-11-25 era:
    initialize, answered with the newest version the server accepts, 2024-11-05 at the oldest)."""
    if isinstance(config, HttpServerConfig):
        return JsonRpcSession(config.name, HttpTransport(config), protocol=config.protocol)
    if isinstance(config, SseServerConfig):
        return JsonRpcSession(config.name, SseLegacyTransport(config))
    return JsonRpcSession(config.name, StdioTransport(config))


@dataclass
class Backoff:
    """Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... capped."""

    initial: float = 0.5
    maximum: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return float(delay * random.uniform(0.8, 1.2))

    def reset(self) -> None:
        self.attempt = 0


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text


class UpstreamSupervisor:
    def __init__(
        self,
        config: ServerConfig,
        on_change: Callable[[], None],
        *,
        connection_factory: Callable[[ServerConfig], UpstreamConnection] = make_connection,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.state: State = "starting"
        self.connection: UpstreamConnection | None = None
        self.lists: dict[ListKind, Listing] = dict.fromkeys(LIST_KINDS, EMPTY)
        """The last lists the upstream answered (kept while it is away)."""
        self.answered = False
        """The upstream has answered its lists at least once since the gateway started."""
        self.offered: JsonObject = {}
        """The capabilities it declared when it last connected (kept while it is away)."""
        self.on_resource_updated: Callable[[str], None] | None = None
        """Gets the upstream URI of each ``notifications/resources/updated``."""
        self.wanted_subscriptions: Callable[[], Collection[str]] = frozenset
        """The upstream URIs the gateway's clients are subscribed to (the hub's registry)."""
        self._subscribed: set[str] = set()
        self._subscribed_on: UpstreamConnection | None = None
        self._subscription_lock = asyncio.Lock()
        self.last_error: str | None = None
        self.restarts = 0
        self.since = datetime.now(UTC)
        self._on_change = on_change
        self._factory = connection_factory
        self._backoff = backoff or Backoff(maximum=config.max_restart_delay_seconds)
        self._stopping = asyncio.Event()
        self._refresh = asyncio.Event()
        self._stale: set[ListKind] = set()
        self._check_soon = asyncio.Event()
        self._last_ok = 0.0
        self.probes = 0
        """Health probes answered since start (for tests and debugging)."""
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"supervise-{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(15):
                    await self._task
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._set_state("stopped")

    async def wait_ready(self, timeout: float) -> bool:
        """For tests and start-up logging: wait until ready (or give up)."""
        deadline = time.monotonic() + timeout
        while self.state != "ready" and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return self.state == "ready"

    def note_success(self) -> None:
        """Traffic just worked: the next health probe can wait."""
        self._last_ok = time.monotonic()

    def note_failure(self) -> None:
        """A call failed on the way (not a tool error): check the upstream's health now."""
        self._check_soon.set()

    @property
    def calls_in_flight(self) -> int:
        """Requests on the live connection still waiting for their answer."""
        conn = self.connection
        return conn.in_flight if isinstance(conn, JsonRpcSession) else 0

    async def retire(self, grace: float, limit: float, poll: float = 0.05) -> None:
        """Stop once no call is in flight (after ``grace`` at least, ``limit`` at most): a replaced or
        removed server finishes the calls that were already sent to it."""
        await asyncio.sleep(grace)
        deadline = time.monotonic() + max(limit - grace, 0.0)
        while self.calls_in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(poll)
        await self.stop()

    @property
    def tools(self) -> list[JsonObject]:
        """The last tool list the upstream answered."""
        return self.lists["tools"].items

    def request_refresh(self, kinds: tuple[ListKind, ...] = ("tools",)) -> None:
        self._stale.update(kinds)
        self._refresh.set()

    def status(self) -> dict[str, Any]:
        conn = self.connection
        status: dict[str, Any] = {
            "name": self.name,
            "transport": self.config.transport,
            "state": self.state,
            "tools": len(self.tools) if self.state == "ready" else 0,
            "resources": len(self.lists["resources"].items) if self.state == "ready" else 0,
            "prompts": len(self.lists["prompts"].items) if self.state == "ready" else 0,
            "last_error": self.last_error,
            "restarts": self.restarts,
            "since": self.since.isoformat(),
        }
        if conn is not None:
            status["protocol_version"] = conn.protocol_version
            status["server_info"] = conn.server_info
            if isinstance(conn, JsonRpcSession):
                status.update(conn.transport.status())
        return status

    # -- the loop ------------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.since = datetime.now(UTC)
            self._on_change()

    async def _run(self) -> None:
        first = True
        while not self._stopping.is_set():
            if not first:
                self.restarts += 1
            first = False
            self._set_state("starting")
            conn = self._factory(self.config)
            conn.on_notification = self._on_notification
            try:
                await conn.open(self.config.startup_timeout_seconds)
                self.lists = {kind: await self._fetch(conn, kind) for kind in LIST_KINDS}
            except (UpstreamError, OSError, TimeoutError) as exc:
                self.last_error = f"start failed: {describe(exc)}"
                logger.warning("[%s] %s", self.name, self.last_error)
                await conn.close()
                await self._sleep_backoff()
                continue
            self.connection = conn
            self.answered = True
            self.offered = dict(conn.capabilities)
            self._stale.clear()
            self._backoff.reset()
            self._check_soon.clear()
            self.note_success()
            logger.info(
                "[%s] ready: %d tools, %d resources, %d resource templates, %d prompts (%s, protocol %s)",
                self.name,
                len(self.tools),
                len(self.lists["resources"].items),
                len(self.lists["resource_templates"].items),
                len(self.lists["prompts"].items),
                (conn.server_info or {}).get("name", "?"),
                conn.protocol_version,
            )
            self._set_state("ready")
            if self.wanted_subscriptions():
                await self.sync_subscriptions()
            try:
                await self._watch(conn)
            finally:
                self.connection = None
                if not self._stopping.is_set():
                    self._set_state("backoff")
                await conn.close()
            if not self._stopping.is_set():
                logger.warning("[%s] lost: %s; reconnecting", self.name, self.last_error)
                await self._sleep_backoff()

    async def _sleep_backoff(self) -> None:
        self._set_state("backoff")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._backoff.next_delay()):
                await self._stopping.wait()

    async def _watch(self, conn: UpstreamConnection) -> None:
        """Return when the connection dies, stops answering, or the gateway stops."""
        interval = self.config.health_interval_seconds
        while not self._stopping.is_set():
            waiters = {
                asyncio.ensure_future(conn.wait_closed()),
                asyncio.ensure_future(self._stopping.wait()),
                asyncio.ensure_future(self._refresh.wait()),
                asyncio.ensure_future(self._check_soon.wait()),
            }
            try:
                await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._stopping.is_set():
                return
            if conn.is_closed:
                self.last_error = conn.closed_reason
                return
            try:
                if self._refresh.is_set():
                    self._refresh.clear()
                    stale, self._stale = sorted(self._stale), set()
                    lists = dict(self.lists)
                    for kind in stale:
                        lists[kind] = await self._fetch(conn, kind)
                    self.lists = lists
                    counts = ", ".join(f"{len(lists[kind].items)} {kind}" for kind in stale)
                    logger.info("[%s] list changed: %s", self.name, counts)
                    self._on_change()
                elif self._check_soon.is_set() or time.monotonic() - self._last_ok >= interval:
                    self._check_soon.clear()
                    await self._probe(conn)
            except (UpstreamError, TimeoutError) as exc:
                self.last_error = f"health check failed: {describe(exc)}"
                return

    async def _probe(self, conn: UpstreamConnection) -> None:
        method = "server/discover" if conn.modern else "ping"
        timeout = min(10.0, self.config.startup_timeout_seconds)
        await conn.request(method, None, timeout=timeout)
        self.probes += 1
        self.note_success()

    async def _fetch(self, conn: UpstreamConnection, kind: ListKind) -> Listing:
        return await fetch_list(conn, kind, self.config.startup_timeout_seconds)

    # -- resource subscriptions ----------------------------------------------------------

    def offers_subscriptions(self) -> bool:
        resources = self.offered.get("resources")
        return isinstance(resources, dict) and resources.get("subscribe") is True

    async def sync_subscriptions(self) -> None:
        """Make the upstream's resource subscriptions what the gateway's clients want now.

        2025 era: ``resources/subscribe`` and ``resources/unsubscribe`` for the difference;
        2026 era: one new ``subscriptions/listen`` with the wanted URIs (it replaces the old
        stream). Runs one at a time; a failure is logged and retried at the next change or
        reconnect (updates of that resource are missed meanwhile, as with a dropped stream).
        """
        async with self._subscription_lock:
            conn = self.connection
            if conn is None or conn.is_closed or not self.offers_subscriptions():
                return
            if self._subscribed_on is not conn:
                self._subscribed_on, self._subscribed = conn, set()
            wanted = set(self.wanted_subscriptions())
            try:
                if conn.modern:
                    if wanted != self._subscribed and isinstance(conn, JsonRpcSession):
                        async with asyncio.timeout(_SUBSCRIBE_TIMEOUT):
                            await conn.listen_for(wanted)
                        self._subscribed = wanted
                    return
                for uri in sorted(wanted - self._subscribed):
                    if await self._subscription_request(conn, "resources/subscribe", uri):
                        self._subscribed.add(uri)
                for uri in sorted(self._subscribed - wanted):
                    self._subscribed.discard(uri)
                    await self._subscription_request(conn, "resources/unsubscribe", uri)
            except (UpstreamError, TimeoutError) as exc:
                logger.warning("[%s] resource subscriptions not updated: %s", self.name, describe(exc))

    async def _subscription_request(self, conn: UpstreamConnection, method: str, uri: str) -> bool:
        reply = await conn.request(method, {"uri": uri}, timeout=_SUBSCRIBE_TIMEOUT)
        error = reply.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            logger.warning("[%s] %s %.200r refused: %.300s", self.name, method, uri, message)
            return False
        return True

    def _on_notification(self, message: JsonObject) -> None:
        method = message.get("method")
        if not isinstance(method, str):
            return
        changed = CHANGED_LISTS.get(method)
        if changed is not None:
            self.request_refresh(changed)
        elif method == "notifications/resources/updated":
            params = message.get("params")
            uri = params.get("uri") if isinstance(params, dict) else None
            if isinstance(uri, str) and self.on_resource_updated is not None:
                self.on_resource_updated(uri)
        elif method == "notifications/message":
            params = message.get("params") or {}
            logger.info("[%s] log %s: %s", self.name, params.get("level"), params.get("data"))
