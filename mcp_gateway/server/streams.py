"""Long-lived server-to-client streams and the SSE framing they share.

2025-11-25 clients open a GET stream on their session; 2026-07-28 clients send
``subscriptions/listen`` and keep its response open. Either way the gateway
tells a client ``notifications/tools/list_changed`` when *its* catalogue
changed (another team's tools coming and going is nobody else's business),
whether an upstream's tools changed or a new policy snapshot changed what the
key may see; pings every 15 s so idle proxies keep the stream open, and ends
the stream when the gateway stops or the key is revoked (a revoked key's
sessions are closed, which ends their GET streams; a listen stream ends with
an error naming why).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import orjson

from gateway_common.sse import encode_comment, encode_event
from mcp_gateway import jsonrpc
from mcp_gateway.errors import GatewayError, jsonrpc_error
from mcp_gateway.server.sessions import Session
from policies import Principal
from policies.outcomes import Outcome

if TYPE_CHECKING:
    from mcp_gateway.runtime import GatewayRuntime

from starlette.types import Receive, Send

JsonObject = dict[str, Any]
PING_INTERVAL = 15.0
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


PING = encode_comment("ping")
STREAM_OPEN = encode_comment("stream open")


def sse_event(message: JsonObject) -> bytes:
    """One JSON-RPC message as an SSE ``message`` event (`gateway_common.sse` frames it)."""
    return encode_event(orjson.dumps(message), "message")


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _next_wake(
    runtime: GatewayRuntime, receive_task: asyncio.Future[None], extra: list[asyncio.Future[Any]]
) -> str:
    """Wait for a catalogue or policy change, a disconnect, the gateway stopping, or the ping interval."""
    change = asyncio.ensure_future(runtime.hub.change_event.wait())
    swap = asyncio.ensure_future(runtime.state.changed.wait())
    stop = asyncio.ensure_future(runtime.shutdown.wait())
    waiters: set[asyncio.Future[Any]] = {change, swap, stop, receive_task, *extra}
    try:
        done, _ = await asyncio.wait(waiters, timeout=PING_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
    finally:
        change.cancel()
        swap.cancel()
        stop.cancel()
    if receive_task in done or any(f in done for f in extra):
        return "gone"
    if stop in done:
        return "stop"
    if change in done or swap in done:
        return "change"
    return "ping"


def _signature(runtime: GatewayRuntime, principal: Principal) -> bytes:
    """What the key sees now, under the current snapshot (a stream outlives many of them)."""
    return runtime.hub.visible_tools(runtime.state.current.grant(principal))[1]


async def _serve_changes(
    runtime: GatewayRuntime,
    principal: Principal,
    receive: Receive,
    send: Send,
    last_signature: bytes | None,
    notification_meta: JsonObject | None,
    extra: list[asyncio.Future[Any]],
    watch_tools: bool = True,
    end_mark: int | None = None,
) -> str:
    """Serve until the client goes (``gone``), the gateway stops (``stop``) or, given the
    ``end_mark`` read when the stream opened, the key stops being valid (``ended``)."""
    receive_task = asyncio.ensure_future(_wait_for_disconnect(receive))
    if last_signature is None:
        last_signature = _signature(runtime, principal)
    try:
        while True:
            wake = await _next_wake(runtime, receive_task, extra)
            if wake in ("gone", "stop"):
                return wake
            if wake == "ping":
                await send({"type": "http.response.body", "body": PING, "more_body": True})
                continue
            if end_mark is not None and runtime.state.ended_since(principal.key_id, end_mark):
                return "ended"
            signature = _signature(runtime, principal)
            if watch_tools and signature != last_signature:
                last_signature = signature
                params = {"_meta": notification_meta} if notification_meta else None
                note: JsonObject = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
                if params:
                    note["params"] = params
                await send({"type": "http.response.body", "body": sse_event(note), "more_body": True})
    finally:
        receive_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receive_task


async def serve_session_stream(
    runtime: GatewayRuntime,
    session: Session,
    receive: Receive,
    send: Send,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """The 2025-11-25 GET stream of one session."""
    session.stream_open = True
    closed = asyncio.ensure_future(session.closed.wait())
    try:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})
        await send({"type": "http.response.body", "body": STREAM_OPEN, "more_body": True})
        await _serve_changes(
            runtime, session.principal, receive, send, session.listed_signature, None, [closed]
        )
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        closed.cancel()
        session.stream_open = False


async def serve_listen(
    runtime: GatewayRuntime,
    principal: Principal,
    request_id: str | int,
    params: JsonObject,
    result_meta: JsonObject,
    receive: Receive,
    send: Send,
) -> None:
    """A 2026-07-28 ``subscriptions/listen`` stream: acknowledgement first, then tools list changes."""
    requested = params.get("notifications")
    if not isinstance(requested, dict):
        requested = {}
    honored: JsonObject = {"toolsListChanged": True} if requested.get("toolsListChanged") else {}
    end_mark = runtime.state.end_mark
    meta = {SUBSCRIPTION_ID_KEY: request_id}
    ack = {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": honored, "_meta": meta},
    }
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    await send({"type": "http.response.body", "body": sse_event(ack), "more_body": True})
    outcome = await _serve_changes(
        runtime, principal, receive, send, None, meta, [], watch_tools=bool(honored), end_mark=end_mark
    )
    if outcome == "ended":
        final = jsonrpc.error_response(request_id, jsonrpc_error(KeyEnded()))
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": sse_event(final), "more_body": False})
    elif outcome == "stop":
        final = {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {"_meta": result_meta, "resultType": "complete"},
        }
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": sse_event(final), "more_body": False})
