"""Keeps one upstream alive: connect, list its tools, watch it, reconnect with backoff.

An upstream that fails to start, dies or stops answering never takes the
gateway down. While it is away its last-known tools stay in the catalogue (a
restart costs clients no tools/list refetch), calls to them get a retryable
"server X is unavailable" error, and it comes back by itself once it answers
again; the tools change only when its fresh tool list differs.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from mcp_gateway.upstream.base import JsonObject, UpstreamConnection, UpstreamError
from mcp_gateway.upstream.http import HttpTransport
from mcp_gateway.upstream.session import JsonRpcSession
from mcp_gateway.upstream.sse_legacy import SseLegacyTransport
from mcp_gateway.upstream.stdio import StdioTransport
from policies import ServerConfig
from policies.servers import HttpServerConfig, SseServerConfig

logger = logging.getLogger("mcp_gateway.upstream")

State = Literal["starting", "ready", "backoff", "stopped"]
_MAX_TOOL_PAGES = 100


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
        self.tools: list[JsonObject] = []
        """The last tool list the upstream answered (kept while it is away)."""
        self.last_error: str | None = None
        self.restarts = 0
        self.since = datetime.now(UTC)
        self._on_change = on_change
        self._factory = connection_factory
        self._backoff = backoff or Backoff(maximum=config.max_restart_delay_seconds)
        self._stopping = asyncio.Event()
        self._refresh = asyncio.Event()
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

    def request_refresh(self) -> None:
        self._refresh.set()

    def status(self) -> dict[str, Any]:
        conn = self.connection
        status: dict[str, Any] = {
            "name": self.name,
            "transport": self.config.transport,
            "state": self.state,
            "tools": len(self.tools) if self.state == "ready" else 0,
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
                self.tools = await self._list_tools(conn)
            except (UpstreamError, OSError, TimeoutError) as exc:
                self.last_error = f"start failed: {describe(exc)}"
                logger.warning("[%s] %s", self.name, self.last_error)
                await conn.close()
                await self._sleep_backoff()
                continue
            self.connection = conn
            self._backoff.reset()
            self._check_soon.clear()
            self.note_success()
            logger.info(
                "[%s] ready: %d tools (%s, protocol %s)",
                self.name,
                len(self.tools),
                (conn.server_info or {}).get("name", "?"),
                conn.protocol_version,
            )
            self._set_state("ready")
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
                    self.tools = await self._list_tools(conn)
                    logger.info("[%s] tool list changed: %d tools", self.name, len(self.tools))
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

    async def _list_tools(self, conn: UpstreamConnection) -> list[JsonObject]:
        if "tools" not in conn.capabilities:
            return []
        tools: list[JsonObject] = []
        cursor: str | None = None
        for _ in range(_MAX_TOOL_PAGES):
            params = {"cursor": cursor} if cursor else None
            reply = await conn.request("tools/list", params, timeout=self.config.startup_timeout_seconds)
            if "error" in reply:
                raise UpstreamError(f"tools/list failed: {reply['error'].get('message')}")
            result = reply.get("result") or {}
            tools.extend(
                t for t in result.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)
            )
            cursor = result.get("nextCursor")
            if not cursor:
                break
        return tools

    def _on_notification(self, message: JsonObject) -> None:
        method = message.get("method")
        if method == "notifications/tools/list_changed":
            self.request_refresh()
        elif method == "notifications/message":
            params = message.get("params") or {}
            logger.info("[%s] log %s: %s", self.name, params.get("level"), params.get("data"))
