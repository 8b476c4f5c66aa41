"""One JSON-RPC session with an upstream MCP server, whatever carries its messages.

Everything JSON-RPC lives here once, for stdio and streamable HTTP alike (two copies
drift): request ids and pending requests, the handshake (``initialize`` then
``notifications/initialized``, or ``server/discover`` for the 2026-07-28 era), routing
what the server sends, cancellation, timeouts, and the one dispatch point for
server-to-client requests (`server_requests`: ``ping`` is answered, the rest go to the
`ClientAsker` of the call they belong to, see `relay_server_request`).

A `MessageTransport` moves messages and says on which task it hands each one over,
with ``receive(message, origin)``. ``origin`` is the call whose own exchange carried
the message when the transport reads it on that caller's task (an HTTP POST's JSON or
SSE response); it is None from a reader task (the stdio reader, the HTTP listening
stream). A call's progress is relayed inline when it arrives on the caller's own task
(the HTTP hot path pays no extra task or queue) and otherwise queued to the call and
relayed by the caller's task, so a slow client never stalls a reader other calls
depend on. A log message or a server request belongs to a call when it came on that call's
own stream (streamable HTTP). stdio and HTTP+SSE carry no such relation: there it belongs to
the one call made for a downstream caller when exactly one is in flight; with several it is
ambiguous, so a log message goes to the connection's handler and a request is refused at once
(relaying one user's elicitation to another would be worse than failing it).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, ClassVar, Literal

from mcp_types.version import LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS

from mcp_gateway.upstream.base import (
    CLIENT_INFO,
    ClientAsker,
    JsonObject,
    NotificationHandler,
    UpstreamClosed,
    UpstreamConnection,
    UpstreamError,
    UpstreamRequestTimeout,
    UpstreamUnreachable,
    initialize_params,
)
from mcp_gateway.upstream.pending import PendingCall
from policies.bounds import MAX_NAME_CHARS, clip

logger = logging.getLogger("mcp_gateway.upstream")

Protocol = Literal["auto", "2025-11-25", "2026-07-28"]
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603
_NOTE_TIMEOUT = 5.0
"""How long a one-way message (a cancellation, an answer to the server) may take to send."""


ServerRequestHandler = Callable[[JsonObject, PendingCall | None], Awaitable[JsonObject]]
"""Answers one server-to-client request (not ``ping``, which the session answers itself).

Gets the request and, where the transport knows it, the call it belongs to (it came on
that call's own stream); returns the response's members: ``{"result": ...}`` or
``{"error": {"code": ..., "message": ...}}``.
"""


async def relay_server_request(message: JsonObject, caller: PendingCall | None) -> JsonObject:
    """Put the request to the downstream caller of the call it belongs to, or refuse it at once."""
    asker = caller.asker if caller is not None else None
    if asker is None:
        method = clip(str(message.get("method")), MAX_NAME_CHARS)
        why = f"the gateway relays {method} only to the client of a call in flight"
        return {"error": {"code": METHOD_NOT_FOUND, "message": why}}
    return await asker.ask(message)


async def refuse_server_request(message: JsonObject, caller: PendingCall | None) -> JsonObject:
    """A handler that relays nothing (tests, or a gateway that offers no client capabilities)."""
    method = clip(str(message.get("method")), MAX_NAME_CHARS)
    return {"error": {"code": METHOD_NOT_FOUND, "message": f"the gateway does not offer {method}"}}


AMBIGUOUS = {
    "code": METHOD_NOT_FOUND,
    "message": "the gateway cannot tell which of the calls in flight on this server the request "
    "belongs to (this transport does not say); it relays requests only while one call is in flight",
}


class MessageTransport(abc.ABC):
    """Moves JSON-RPC messages between a `JsonRpcSession` and one upstream."""

    inline_replies: ClassVar[bool]
    """`send_request` reads the answer (and the call's notifications) on the caller's task."""

    @abc.abstractmethod
    async def open(self, session: JsonRpcSession, timeout: float) -> None:
        """Connect (or spawn); hand every message read outside a call's exchange to ``session.receive``."""

    @abc.abstractmethod
    async def send_request(
        self, message: JsonObject, call: PendingCall, *, modern: bool, headers: dict[str, str] | None
    ) -> None:
        """Send a request. Inline transports return once ``call`` has its answer (fed through
        ``session.receive(message, call)``), or raise; others return once it is sent.

        Raises `UpstreamUnreachable` when nothing was sent, `UpstreamError` on a failed exchange.
        """

    @abc.abstractmethod
    async def send(self, message: JsonObject) -> None:
        """Send a notification or an answer to the server; raises `UpstreamError`."""

    @abc.abstractmethod
    async def listen(self, subscribe: JsonObject | None) -> None:
        """Open the stream for messages outside any call (``subscribe``: the 2026 request for it);
        return once it is established (or refused), so nothing sent after `open` is missed. A
        later call replaces the stream (closing the old one once the new one is established)."""

    def status(self) -> JsonObject:
        """Details for the status page (a child's pid)."""
        return {}

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the transport (stop the child, end the streams)."""


def envelope(params: JsonObject | None, client: ClientAsker | None = None) -> JsonObject:
    """The 2026-07-28 request envelope in ``_meta``: every request says who and what speaks. For a
    downstream caller, the capabilities it has (so the upstream asks only what it can answer) and
    the log level it asked for."""
    params = dict(params or {})
    meta = dict(params.get("_meta") or {})
    meta["io.modelcontextprotocol/protocolVersion"] = LATEST_MODERN_VERSION
    meta["io.modelcontextprotocol/clientInfo"] = CLIENT_INFO
    meta["io.modelcontextprotocol/clientCapabilities"] = client.capabilities if client is not None else {}
    if client is not None and client.log_level is not None:
        meta["io.modelcontextprotocol/logLevel"] = client.log_level
    params["_meta"] = meta
    return params


def _error_text(reply: JsonObject) -> str:
    error = reply.get("error")
    return str(error.get("message") if isinstance(error, dict) else error)


class JsonRpcSession(UpstreamConnection):
    """An upstream connection: the JSON-RPC session over one `MessageTransport`."""

    def __init__(
        self, server: str, transport: MessageTransport, *, protocol: Protocol = "2025-11-25"
    ) -> None:
        super().__init__(server)
        self.transport = transport
        self.protocol: Protocol = protocol
        """Era to speak: auto tries server/discover first, then initialize."""
        self.server_requests: ServerRequestHandler = relay_server_request
        self._ids = itertools.count(1)
        self._pending: dict[int, PendingCall] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (a replaced server is stopped once this reaches 0)."""
        return len(self._pending)

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self, timeout: float) -> None:
        await self.transport.open(self, timeout)
        async with asyncio.timeout(timeout):
            if self.protocol == "2025-11-25" or not await self._discover():
                if self.protocol == "2026-07-28":
                    raise UpstreamError("server/discover failed; the server does not speak 2026-07-28")
                await self._initialize()
            await self._listen()

    async def _discover(self) -> bool:
        """Try the 2026-07-28 era: ``modern`` stays set if the server speaks it."""
        self.modern = True
        try:
            reply = await self.request("server/discover", {}, timeout=None)
        except UpstreamError as exc:
            logger.debug("[%s] server/discover refused (%s); falling back to initialize", self.server, exc)
            reply = {}
        result = reply.get("result")
        versions = (result.get("supportedVersions") or []) if isinstance(result, dict) else []
        if not isinstance(result, dict) or not any(v in MODERN_PROTOCOL_VERSIONS for v in versions):
            self.modern = False
            return False
        self.protocol_version = LATEST_MODERN_VERSION
        self.capabilities = result.get("capabilities") or {}
        self.instructions = result.get("instructions")
        meta = result.get("_meta") or {}
        self.server_info = meta.get("io.modelcontextprotocol/serverInfo") or {}
        return True

    async def _initialize(self) -> None:
        reply = await self.request("initialize", initialize_params(), timeout=None)
        if "error" in reply:
            raise UpstreamError(f"initialize failed: {_error_text(reply)}")
        result = reply.get("result") or {}
        self.protocol_version = str(result.get("protocolVersion", self.protocol_version))
        self.server_info = result.get("serverInfo") or {}
        self.capabilities = result.get("capabilities") or {}
        self.instructions = result.get("instructions")
        await self.transport.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _listen(self) -> None:
        """Messages outside any call. 2025 era: always (a server may send requests and
        notifications there whatever it advertises). 2026 era: a subscriptions/listen for what
        the gateway uses (list changes of what the server offers), when it offers any."""
        if not self.modern:
            await self.transport.listen(None)
            return
        await self.listen_for(())

    def listen_filter(self, resource_uris: Collection[str]) -> JsonObject:
        """The 2026 ``subscriptions/listen`` filter: every list change the server can announce, and
        updates of ``resource_uris`` (when it offers resource subscriptions)."""
        wanted: JsonObject = {}
        for capability, flag in (
            ("tools", "toolsListChanged"),
            ("resources", "resourcesListChanged"),
            ("prompts", "promptsListChanged"),
        ):
            offered = self.capabilities.get(capability)
            if isinstance(offered, dict) and offered.get("listChanged"):
                wanted[flag] = True
        resources = self.capabilities.get("resources")
        if resource_uris and isinstance(resources, dict) and resources.get("subscribe"):
            wanted["resourceSubscriptions"] = sorted(resource_uris)
        return wanted

    async def listen_for(self, resource_uris: Collection[str]) -> None:
        """(2026 era) Open a listen stream for list changes and ``resource_uris``; it replaces the
        previous one once established, so nothing announced in between is lost."""
        wanted = self.listen_filter(resource_uris)
        if not wanted:
            return
        subscribe = {
            "jsonrpc": "2.0",
            "id": f"listen-{next(self._ids)}",
            "method": "subscriptions/listen",
            "params": envelope({"notifications": wanted}),
        }
        await self.transport.listen(subscribe)

    def connection_lost(self, reason: str) -> None:
        """The transport is gone: calls waiting on its reader fail now (an inline call's own
        exchange ends by itself); the supervisor reconnects."""
        self._mark_closed(reason)
        for call in self._pending.values():
            if not call.inline:
                call.fail(UpstreamClosed(reason))

    async def close(self) -> None:
        await self.transport.close()
        self.connection_lost(self.closed_reason or "closed by the gateway")
        for task in self._background:
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- requests ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: JsonObject | None,
        *,
        timeout: float | None,
        on_notification: NotificationHandler | None = None,
        headers: dict[str, str] | None = None,
        client: ClientAsker | None = None,
        progress: bool = True,
    ) -> JsonObject:
        if self.is_closed:
            raise UpstreamUnreachable(self.closed_reason or "not connected")
        modern = self.modern
        request_id = next(self._ids)
        call = PendingCall(request_id, method, on_notification, self.transport.inline_replies)
        call.asker = client
        if on_notification is not None and progress:
            params = dict(params or {})
            meta = dict(params.get("_meta") or {})
            meta["progressToken"] = request_id
            params["_meta"] = meta
        if modern:
            params = envelope(params, client)
        message: JsonObject = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self._pending[request_id] = call
        try:
            async with asyncio.timeout(timeout):
                await self.transport.send_request(message, call, modern=modern, headers=headers)
                reply = call.reply
                if reply is not None and not call.backlog:
                    return reply
                return await call.wait()
        except TimeoutError:
            self._cancel_upstream(call, "timed out in the gateway", modern)
            if timeout is None:
                raise
            raise UpstreamRequestTimeout(f"no answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            self._cancel_upstream(call, "cancelled by the client", modern)
            raise
        finally:
            del self._pending[request_id]

    def _cancel_upstream(self, call: PendingCall, reason: str, modern: bool) -> None:
        """2025 era: tell the server (never about ``initialize``, which may not be cancelled).
        2026 era: the abandoned exchange is the cancellation (a cancelled caller leaves its POST
        unread, which closes it)."""
        if modern or self.is_closed or call.reply is not None or call.method == "initialize":
            return
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": call.request_id, "reason": reason},
        }
        self._spawn(self._send_quietly(note))

    # -- what the server sends -----------------------------------------------------------

    async def receive(self, message: JsonObject, origin: PendingCall | None) -> None:
        """One message from the server; ``origin``: the call whose exchange carried it, when
        handed over on that call's own task (None from a reader task)."""
        if origin is not None and origin.backlog:
            await origin.relay_queued()
        method = message.get("method")
        if method is None:
            self._resolve(message, origin)
        elif not isinstance(method, str):
            logger.debug("[%s] ignored a message whose method is not a string", self.server)
        elif "id" in message:
            await self._server_request(message, origin)
        elif method == "notifications/progress":
            params = message.get("params")
            token = params.get("progressToken") if isinstance(params, dict) else None
            call = self._pending.get(token) if type(token) is int else None
            if call is not None and call.relay is not None:
                if call is origin:
                    await call.relay(message)
                else:
                    call.queue(message)
        elif method == "notifications/message" and (call := origin or self._sole_caller()) is not None:
            if call.relay is None:
                pass  # that caller wants no log messages
            elif call is origin:
                await call.relay(message)
            else:
                call.queue(message)
        elif self.on_notification is not None:
            self.on_notification(message)

    def _resolve(self, response: JsonObject, origin: PendingCall | None) -> None:
        request_id = response.get("id")
        call = self._pending.get(request_id) if type(request_id) is int else None
        if call is None and request_id is None and origin is not None:
            call = origin  # an error the server could not tie to an id, on this call's own exchange
        if call is not None:
            call.resolve(response)
        else:
            logger.debug("[%s] ignored a response to no pending request: %.200r", self.server, request_id)

    async def _server_request(self, message: JsonObject, origin: PendingCall | None) -> None:
        """The one dispatch point for server-to-client requests. A handler runs on the caller's
        task when the request came on that call's stream, else on its own task (never the reader's)."""
        if message["method"] == "ping":
            await self._send_quietly({"jsonrpc": "2.0", "id": message["id"], "result": {}})
        elif origin is not None:
            await self._answer(message, origin)
        elif not self.transport.inline_replies and self._callers() > 1:
            await self._send_quietly({"jsonrpc": "2.0", "id": message["id"], "error": AMBIGUOUS})
        else:
            self._spawn(self._answer(message, self._sole_caller()))

    def _callers(self) -> int:
        """Calls in flight made for a downstream caller."""
        return sum(1 for call in self._pending.values() if call.asker is not None)

    def _sole_caller(self) -> PendingCall | None:
        """The call a message without a relation belongs to: the one in flight for a downstream
        caller, if there is exactly one, on a transport that relates nothing (on streamable HTTP a
        message outside a call's own stream belongs to no call)."""
        if self.transport.inline_replies:
            return None
        found = None
        for call in self._pending.values():
            if call.asker is not None:
                if found is not None:
                    return None
                found = call
        return found

    async def _answer(self, message: JsonObject, caller: PendingCall | None) -> None:
        try:
            outcome = await self.server_requests(message, caller)
            if not isinstance(outcome, dict) or not ("result" in outcome or "error" in outcome):
                raise TypeError(f"a server request handler returned {type(outcome).__name__}")
        except Exception:
            logger.exception("[%s] answering %.100r failed", self.server, message["method"])
            outcome = {"error": {"code": INTERNAL_ERROR, "message": "the gateway failed to answer"}}
        await self._send_quietly({"jsonrpc": "2.0", "id": message["id"], **outcome})

    async def _send_quietly(self, message: JsonObject) -> None:
        """A one-way message whose failure changes nothing: the transport's state tells the rest."""
        with contextlib.suppress(UpstreamError, TimeoutError):
            async with asyncio.timeout(_NOTE_TIMEOUT):
                await self.transport.send(message)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("[%s] background work failed: %r", self.server, exc)
