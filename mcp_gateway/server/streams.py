"""Long-lived server-to-client streams and the SSE framing they share.

2025-11-25 clients open a GET stream on their session; 2026-07-28 clients send
``subscriptions/listen`` and keep its response open. Either way the gateway tells a
client ``notifications/{tools,resources,prompts}/list_changed`` when *its* view of
that list changed (another team's tools coming and going is nobody else's business),
whether an upstream's list changed or a new policy snapshot changed what the key may
see, and ``notifications/resources/updated`` for the resources it subscribed to (2025:
``resources/subscribe`` on the session; 2026: the listen's ``resourceSubscriptions``),
checked against the key's permissions when sent. A 2026 stream carries only what the
client asked for and the gateway offers (the acknowledgement says which). Streams ping
every 15 s so idle proxies keep them open, and end when the gateway stops or the key is
revoked (a revoked key's sessions are closed, which ends their GET streams; a listen
stream ends with an error naming why).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gateway_common.sse import encode_comment, encode_event
from mcp_gateway import jsonrpc
from mcp_gateway.errors import GatewayError, jsonrpc_error
from mcp_gateway.server.sessions import Session
from mcp_gateway.subscriptions import MAX_SUBSCRIPTIONS, ClientSurface
from mcp_gateway.upstream.listing import ListKind
from policies import Principal
from policies.bounds import MAX_NAME_CHARS
from policies.outcomes import Outcome

if TYPE_CHECKING:
    from mcp_gateway.runtime import GatewayRuntime

from starlette.types import Receive, Send

JsonObject = dict[str, Any]
PING_INTERVAL = 15.0
SUBSCRIBE_WAIT = 10.0
"""How long a listen waits for its resource subscriptions to reach the upstreams before acknowledging."""
MAX_URI_CHARS = MAX_NAME_CHARS * 16
SUBSCRIPTION_ID_KEY = "io.modelcontextprotocol/subscriptionId"
KEY_ENDED = -32013
"""JSON-RPC code of `KeyEnded` (implementation-defined range)."""


class KeyEnded(GatewayError):
    """Ends a listen stream whose key stopped being valid while it was open."""

    code = KEY_ENDED
    outcome = Outcome.DENIED

    def __init__(self) -> None:
        super().__init__("The virtual key of this subscription is no longer valid (revoked or expired)")


SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
LIST_CHANGED: dict[ListKind, str] = {
    "tools": "notifications/tools/list_changed",
    "resources": "notifications/resources/list_changed",
    "resource_templates": "notifications/resources/list_changed",
    "prompts": "notifications/prompts/list_changed",
}
ALL_LISTS: tuple[ListKind, ...] = ("tools", "resources", "resource_templates", "prompts")
_LISTEN_FLAGS: dict[str, tuple[ListKind, ...]] = {
    "toolsListChanged": ("tools",),
    "resourcesListChanged": ("resources", "resource_templates"),
    "promptsListChanged": ("prompts",),
}
_FLAG_CAPABILITY = {
    "toolsListChanged": "tools",
    "resourcesListChanged": "resources",
    "promptsListChanged": "prompts",
}


PING = encode_comment("ping")
STREAM_OPEN = encode_comment("stream open")


def sse_event(message: JsonObject) -> bytes:
    """One JSON-RPC message as an SSE ``message`` event (`gateway_common.sse` frames it)."""
    return encode_event(orjson.dumps(message), "message")


@dataclass
class Watch:
    """What one stream tells its client, and what it told it last."""

    principal: Principal
    kinds: tuple[ListKind, ...]
    """The lists whose changes it reports."""
    last: dict[ListKind, bytes]
    """The signature of each list as the client last knew it."""
    surface: ClientSurface | None
    """Where its resource updates arrive (None: it has no subscriptions)."""
    meta: JsonObject | None = None
    """``_meta`` of every notification it sends (the 2026 subscription id)."""

    def notification(self, method: str, params: JsonObject | None = None) -> bytes:
        params = dict(params or {})
        if self.meta:
            params["_meta"] = self.meta
        note: JsonObject = {"jsonrpc": "2.0", "method": method}
        if params:
            note["params"] = params
        return sse_event(note)


def _signatures(
    runtime: GatewayRuntime, principal: Principal, kinds: tuple[ListKind, ...]
) -> dict[ListKind, bytes]:
    """What the key sees now, under the current snapshot (a stream outlives many of them)."""
    grant = runtime.state.current.grant(principal)
    return {kind: runtime.hub.view(kind, grant).signature for kind in kinds}


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _next_wake(
    runtime: GatewayRuntime,
    receive_task: asyncio.Future[None],
    extra: list[asyncio.Future[Any]],
    surface: ClientSurface | None,
) -> set[str]:
    """Wait for a catalogue or policy change, a resource update, a disconnect, the gateway
    stopping, or the ping interval; the reasons it woke for."""
    change = asyncio.ensure_future(runtime.hub.change_event.wait())
    swap = asyncio.ensure_future(runtime.state.changed.wait())
    stop = asyncio.ensure_future(runtime.shutdown.wait())
    mine = [change, swap, stop]
    if surface is not None:
        updated = asyncio.ensure_future(surface.updated.wait())
        mine.append(updated)
    waiters: set[asyncio.Future[Any]] = {*mine, receive_task, *extra}
    try:
        done, _ = await asyncio.wait(waiters, timeout=PING_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in mine:
            waiter.cancel()
    if receive_task in done or any(f in done for f in extra):
        return {"gone"}
    if stop in done:
        return {"stop"}
    reasons = set()
    if change in done or swap in done:
        reasons.add("change")
    if surface is not None and surface.pending:
        reasons.add("updates")
    return reasons or {"ping"}


async def _send(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _serve_changes(
    runtime: GatewayRuntime,
    watch: Watch,
    receive: Receive,
    send: Send,
    extra: list[asyncio.Future[Any]],
    end_mark: int | None = None,
) -> str:
    """Serve until the client goes (``gone``), the gateway stops (``stop``) or, given the
    ``end_mark`` read when the stream opened, the key stops being valid (``ended``)."""
    receive_task = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        while True:
            reasons = await _next_wake(runtime, receive_task, extra, watch.surface)
            if "gone" in reasons or "stop" in reasons:
                return next(iter(reasons))
            if end_mark is not None and runtime.state.ended_since(watch.principal.key_id, end_mark):
                return "ended"
            if "ping" in reasons:
                await _send(send, PING)
            if "change" in reasons:
                await _send_list_changes(runtime, watch, send)
            if "updates" in reasons and watch.surface is not None:
                await _send_updates(runtime, watch, watch.surface, send)
    finally:
        receive_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receive_task


async def _send_list_changes(runtime: GatewayRuntime, watch: Watch, send: Send) -> None:
    now = _signatures(runtime, watch.principal, watch.kinds)
    methods = {LIST_CHANGED[kind]: None for kind in watch.kinds if now[kind] != watch.last.get(kind)}
    watch.last = now
    for method in methods:
        await _send(send, watch.notification(method))


async def _send_updates(runtime: GatewayRuntime, watch: Watch, surface: ClientSurface, send: Send) -> None:
    grant = runtime.state.current.grant(watch.principal)
    for uri in surface.take():
        binding, permitted = runtime.hub.lookup_resource(uri, grant)
        if binding is not None and permitted:
            await _send(send, watch.notification("notifications/resources/updated", {"uri": uri}))


async def serve_session_stream(
    runtime: GatewayRuntime,
    session: Session,
    receive: Receive,
    send: Send,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """The 2025-11-25 GET stream of one session: every list's changes, and its resource updates."""
    session.stream_open = True
    closed = asyncio.ensure_future(session.closed.wait())
    try:
        surface = session.surface_for(runtime.hub.new_surface)
        last = _signatures(runtime, session.principal, ALL_LISTS)
        last.update(surface.listed)  # what the client fetched, if it changed since
        if session.listed_signature is not None:
            last["tools"] = session.listed_signature
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})
        await _send(send, STREAM_OPEN)
        watch = Watch(session.principal, ALL_LISTS, last, surface)
        await _send_list_changes(runtime, watch, send)  # lists that changed since the client fetched them
        if surface.pending:
            await _send_updates(runtime, watch, surface, send)  # updates while no stream was open
        await _serve_changes(runtime, watch, receive, send, [closed])
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        closed.cancel()
        session.stream_open = False


def _honored(runtime: GatewayRuntime, params: JsonObject) -> JsonObject:
    """The part of a listen's filter the gateway will deliver: what it offers, bounded."""
    requested = params.get("notifications")
    if not isinstance(requested, dict):
        return {}
    capabilities = runtime.hub.capabilities
    honored: JsonObject = {
        flag: True
        for flag, capability in _FLAG_CAPABILITY.items()
        if requested.get(flag) is True and capability in capabilities
    }
    uris = requested.get("resourceSubscriptions")
    resources = capabilities.get("resources")
    if isinstance(uris, list) and isinstance(resources, dict) and resources.get("subscribe"):
        kept = [u for u in dict.fromkeys(u for u in uris if isinstance(u, str)) if len(u) <= MAX_URI_CHARS]
        if kept[:MAX_SUBSCRIPTIONS]:
            honored["resourceSubscriptions"] = kept[:MAX_SUBSCRIPTIONS]
    return honored


async def serve_listen(
    runtime: GatewayRuntime,
    principal: Principal,
    request_id: str | int,
    params: JsonObject,
    result_meta: JsonObject,
    receive: Receive,
    send: Send,
) -> None:
    """A 2026-07-28 ``subscriptions/listen`` stream: acknowledgement first, then what it asked for."""
    end_mark = runtime.state.end_mark
    honored = _honored(runtime, params)
    kinds = tuple(
        kind for flag, flag_kinds in _LISTEN_FLAGS.items() if honored.get(flag) for kind in flag_kinds
    )
    surface = None
    uris = honored.get("resourceSubscriptions") or []
    if uris:
        surface = runtime.hub.new_surface()
        grant = runtime.state.current.grant(principal)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SUBSCRIBE_WAIT):
                await runtime.hub.subscribe(surface, uris, grant)
    try:
        meta = {SUBSCRIPTION_ID_KEY: request_id}
        ack = {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honored, "_meta": meta},
        }
        watch = Watch(principal, kinds, _signatures(runtime, principal, kinds), surface, meta)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await _send(send, sse_event(ack))
        outcome = await _serve_changes(runtime, watch, receive, send, [], end_mark)
        if outcome == "ended":
            final_error = jsonrpc.error_response(request_id, jsonrpc_error(KeyEnded()))
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": sse_event(final_error), "more_body": False})
        elif outcome == "stop":
            final = {
                "jsonrpc": "2.0",
                "id": request_id,
                "result": {"_meta": result_meta, "resultType": "complete"},
            }
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": sse_event(final), "more_body": False})
    finally:
        if surface is not None:
            surface.close()
