"""How the gateway is served: the one uvicorn configuration, and an HTTP protocol that bounds slow,
idle and surplus clients.

uvicorn on its own holds a connection that never finishes its headers, or never
sends a request, forever (its keep-alive timeout starts only after a response),
and its ``limit_concurrency`` counts idle connections too and answers in plain
text. `GatewayHttpProtocol` (uvicorn's httptools protocol plus a few hooks) adds,
per connection:

- an idle deadline, ``keep_alive_seconds``, while no request is under way: from
  the moment the connection opens and from the end of each response;
- a header deadline, ``header_timeout_seconds``, from a request's first byte
  until its headers are complete, answered 408 and closed;
- no deadline at all once the headers are in: a GET stream, a
  ``subscriptions/listen`` or a streamed model reply lasts as long as it needs.

and per process:

- at ``max_connections`` the longest idle connection is closed to make room; with
  none idle, the newcomer's request gets 503 and the connection is closed;
- at ``max_requests_in_flight`` a request gets 503.

Both 503s carry ``Retry-After`` and a JSON body in the shape the route's clients
read (Anthropic or OpenAI on the model routes, ``{"error", "message"}`` elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from llm_proxy.errors import Flavor, ProxyError, error_response
from policies.gateway_settings import GatewaySettings

logger = logging.getLogger("gateway_app.serving")

SERVE_SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another wants it, for `serve` (Python's default: 0.005).

The audit and ledger writers, the key-change poll, a reload and other `asyncio.to_thread` work run
in threads beside the event loop; with the default, a request that arrives while one of them runs
Python code can wait up to 5 ms for the interpreter. Measured with benchmarks/mcp_tools_call.py
(one client, 12,000 calls a run, four runs alternated with the default, 2026-12-01, one core
busy with other work): gateway p99 2.5-3.9 ms instead of 2.9-4.5 ms, lower in each pair, p50 and
CPU per call unchanged within noise. Most of the p99 above a direct call is elsewhere. Set by the
`serve` command only, as it is process-wide.
"""

RETRY_AFTER_SECONDS = 1
MIN_IDLE_TO_RECLAIM = 1.0
"""A connection idle for less than this is never closed to make room: its request may be on the way."""
NOTICE_INTERVAL = 10.0
"""Refusals and timeouts are logged at most once per kind this often, with a count."""
FILE_LIMIT_MARGIN = 256
"""Open files besides client connections: upstream connections, the database, logs."""

Headers = list[tuple[bytes, bytes]]


class _Busy(ProxyError):
    status, error_type, code = 503, "overloaded_error", "overloaded"

    def headers(self) -> Headers:
        return [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]


def _busy_response(message: str, close: bool) -> Callable[[str], tuple[Headers, bytes]]:
    """The 503 for each kind of route, built once: path -> (headers, body)."""
    extra: Headers = [(b"connection", b"close")] if close else []
    by_flavor: dict[str, tuple[Headers, bytes]] = {}
    flavors: tuple[Flavor, ...] = ("anthropic", "openai")
    for flavor in flavors:
        _, headers, body = error_response(_Busy(message), flavor)
        by_flavor[flavor] = (headers + extra, body)
    plain = orjson.dumps({"error": "overloaded", "message": message})
    by_flavor["plain"] = (
        [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(plain)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            *extra,
        ],
        plain,
    )

    def for_path(path: str) -> tuple[Headers, bytes]:
        if path.startswith("/v1/chat/"):
            return by_flavor["openai"]
        if path.startswith("/v1/"):
            return by_flavor["anthropic"]
        return by_flavor["plain"]

    return for_path


def _refusal_app(response: Callable[[str], tuple[Headers, bytes]]) -> ASGIApp:
    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        headers, body = response(scope["path"])
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return refuse


class _Notices:
    """Counts refusals and timeouts; one warning per kind at most every `NOTICE_INTERVAL` seconds."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    def note(self, kind: str, message: str) -> None:
        self._counts[kind] += 1
        now = time.monotonic()
        if now - self._logged_at.get(kind, -math.inf) >= NOTICE_INTERVAL:
            self._logged_at[kind] = now
            logger.warning("%s (%d times since the last such message)", message, self._counts.pop(kind))


@dataclass(frozen=True, eq=False)
class ServingLimits:
    """The connection limits of `GatewaySettings`, plus the answers they give, built once."""

    header_timeout: float
    keep_alive: float
    max_connections: int
    max_requests_in_flight: int
    header_timeout_response: bytes = field(init=False)
    refuse_connection: ASGIApp = field(init=False)
    refuse_request: ASGIApp = field(init=False)
    notices: _Notices = field(init=False, default_factory=_Notices)

    def __post_init__(self) -> None:
        body = orjson.dumps(
            {
                "error": "request_timeout",
                "message": f"The request headers did not arrive within {self.header_timeout:g} s "
                "(gateway.header_timeout_seconds)",
            }
        )
        head = (
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
        )
        set_ = object.__setattr__
        set_(self, "header_timeout_response", head + body)
        connections = (
            f"The gateway is at its limit of {self.max_connections} open connections "
            "(gateway.max_connections); retry shortly"
        )
        requests = (
            f"The gateway is at its limit of {self.max_requests_in_flight} requests in flight "
            "(gateway.max_requests_in_flight); retry shortly"
        )
        set_(self, "refuse_connection", _refusal_app(_busy_response(connections, close=True)))
        set_(self, "refuse_request", _refusal_app(_busy_response(requests, close=False)))

    @classmethod
    def from_settings(cls, gateway: GatewaySettings) -> ServingLimits:
        return cls(
            gateway.header_timeout_seconds,
            gateway.keep_alive_seconds,
            gateway.max_connections,
            gateway.max_requests_in_flight,
        )


class GatewayConfig(uvicorn.Config):
    """A uvicorn configuration that carries the `ServingLimits` its protocol enforces."""

    def __init__(self, app: Any, limits: ServingLimits, **options: Any) -> None:
        super().__init__(app, http=GatewayHttpProtocol, **options)
        self.limits = limits


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and caps described in the module docstring.

    The hooks cost a few hundred nanoseconds per request: the header deadline is armed
    only when a request's headers did not arrive in one piece, and is never cancelled
    (it checks, when it fires, whether its request is still waiting for headers).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ServingLimits = cast(GatewayConfig, config).limits
        self.timeout_keep_alive = self.limits.keep_alive  # type: ignore[assignment]  # float seconds
        self.served_app = self.app
        self.over_capacity = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_scope: object = None

    # -- idle connections and the connection cap -------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Idle from the start: uvicorn arms this timer only after a response.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        if len(self.connections) > self.limits.max_connections and not self._reclaim_idle_connection():
            self.over_capacity = True
            self.limits.notices.note(
                "connections", f"refusing requests: {len(self.connections)} connections are open"
            )

    def _reclaim_idle_connection(self) -> bool:
        """Close the connection idle the longest (at least `MIN_IDLE_TO_RECLAIM`); False if none is."""
        latest = self.loop.time() + self.timeout_keep_alive - MIN_IDLE_TO_RECLAIM
        oldest: asyncio.TimerHandle | None = None
        victim: GatewayHttpProtocol | None = None
        for connection in self.connections:
            if connection is self or not isinstance(connection, GatewayHttpProtocol):
                continue
            idle = connection.timeout_keep_alive_task
            if (
                idle is not None
                and idle.when() <= latest
                and (oldest is None or idle.when() < oldest.when())
                and not connection.transport.is_closing()
            ):
                oldest, victim = idle, connection
        if victim is None:
            return False
        victim.timeout_keep_alive_handler()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    # -- the header deadline -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is None:
            scope = self.scope
            # uvicorn makes a new scope per request and sets "method" once the headers are complete.
            if scope is not None and "method" not in scope and not self.transport.is_closing():
                self._arm_header_deadline(scope)

    def _arm_header_deadline(self, scope: object) -> None:
        self._header_scope = scope
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_deadline)

    def _header_deadline(self) -> None:
        self._header_timer = None
        scope = self.scope
        if self.transport.is_closing() or scope is None or "method" in scope:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request behind a response still under way (a stream, say): that response
            # is not cut; once it ends the idle deadline applies.
            return
        if scope is not self._header_scope:
            self._arm_header_deadline(scope)  # a later request; it gets its own full deadline
            return
        self.limits.notices.note(
            "headers", f"closed connections whose request headers took over {self.limits.header_timeout:g} s"
        )
        self.transport.write(self.limits.header_timeout_response)
        self.transport.close()

    # -- the cap on requests in flight -------------------------------------------------------

    def on_headers_complete(self) -> None:
        if self.over_capacity or len(self.tasks) >= self.limits.max_requests_in_flight:
            if not self.over_capacity:
                self.limits.notices.note("requests", f"refusing requests: {len(self.tasks)} in flight")
            self.app = self.limits.refuse_connection if self.over_capacity else self.limits.refuse_request
            try:
                super().on_headers_complete()
            finally:
                self.app = self.served_app
        else:
            super().on_headers_complete()


def uvicorn_config(app: Any, gateway: GatewaySettings, **options: Any) -> GatewayConfig:
    """The uvicorn configuration for ``app`` under ``gateway``'s settings (``options`` override)."""
    settings: dict[str, Any] = {
        "host": gateway.host,
        "port": gateway.port,
        "lifespan": "on",
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "timeout_keep_alive": math.ceil(gateway.keep_alive_seconds),  # the protocol uses the exact value
        "timeout_graceful_shutdown": int(gateway.shutdown_grace_seconds) or None,
    }
    settings.update(options)
    return GatewayConfig(app, ServingLimits.from_settings(gateway), **settings)


def raise_open_file_limit(connections: int) -> None:
    """Lift the soft limit on open files (up to the hard one) so ``connections`` can all be open."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FILE_LIMIT_MARGIN
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        logger.warning(
            "open files are limited to %d: fewer than gateway.max_connections (%d) + %d can be open",
            target,
            connections,
            FILE_LIMIT_MARGIN,
        )
