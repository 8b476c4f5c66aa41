"""The JSON-RPC upstream session in memory, over a fake transport the test plays the server on.

Two kinds of transport: a reader transport (like stdio: one reader task hands over
everything, requests are answered later) and an inline one (like HTTP: a request's
own exchange carries its notifications and answer, read on the caller's task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mcp_gateway.upstream.base import (
    CLIENT_INFO,
    JsonObject,
    UpstreamClosed,
    UpstreamError,
    UpstreamRequestTimeout,
    UpstreamUnreachable,
    initialize_params,
)
from mcp_gateway.upstream.pending import PendingCall
from mcp_gateway.upstream.session import JsonRpcSession, MessageTransport, Protocol

Exchange = Callable[["FakeTransport", JsonObject, PendingCall], Awaitable[None]]
INIT_RESULT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {"listChanged": True}},
    "serverInfo": {"name": "fake", "version": "1"},
}
DISCOVER_RESULT = {
    "supportedVersions": ["2026-07-28"],
    "capabilities": {"tools": {"listChanged": True}},
    "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "fake-modern", "version": "2"}},
}


class FakeTransport(MessageTransport):
    """Records what the session sends. Reader mode: requests wait in ``requests`` for the test
    to answer through `deliver` (on the test's task, like a reader). Inline mode: ``exchange``
    plays the server on the caller's task."""

    inline_replies = False

    def __init__(self, exchange: Exchange | None = None, discover: JsonObject | None = None) -> None:
        self.exchange = exchange
        self.discover = discover
        self.session: JsonRpcSession | None = None
        self.sent: list[JsonObject] = []
        self.headers: list[dict[str, str] | None] = []
        self.one_way: asyncio.Queue[JsonObject] = asyncio.Queue()
        self.requests: asyncio.Queue[JsonObject] = asyncio.Queue()
        self.listening: list[JsonObject | None] = []
        self.closed = False

    async def open(self, session: JsonRpcSession, timeout: float) -> None:
        self.session = session

    async def send_request(
        self, message: JsonObject, call: PendingCall, *, modern: bool, headers: dict[str, str] | None
    ) -> None:
        self.sent.append(message)
        self.headers.append(headers)
        method = message["method"]
        if method in ("initialize", "server/discover"):
            await self._handshake(message, call)
        elif self.exchange is not None:
            await self.exchange(self, message, call)
        else:
            self.requests.put_nowait(message)

    async def _handshake(self, message: JsonObject, call: PendingCall) -> None:
        if message["method"] == "initialize":
            reply: JsonObject = {"jsonrpc": "2.0", "id": message["id"], "result": INIT_RESULT}
        elif self.discover is not None:
            reply = {"jsonrpc": "2.0", "id": message["id"], "result": self.discover}
        else:
            reply = {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "no"}}
        await self.deliver(reply, call)

    async def deliver(self, message: JsonObject, call: PendingCall | None = None) -> None:
        """Hand a message to the session as this kind of transport would: on the caller's task
        naming its call (inline), or as from a reader task (``call`` is ignored)."""
        assert self.session is not None
        await self.session.receive(message, call if self.inline_replies else None)

    async def send(self, message: JsonObject) -> None:
        self.sent.append(message)
        self.one_way.put_nowait(message)

    async def listen(self, subscribe: JsonObject | None) -> None:
        self.listening.append(subscribe)

    async def close(self) -> None:
        self.closed = True


class InlineTransport(FakeTransport):
    inline_replies = True


async def opened(
    transport: FakeTransport, protocol: Protocol = "2025-11-25"
) -> tuple[JsonRpcSession, list[JsonObject]]:
    session = JsonRpcSession("fake", transport, protocol=protocol)
    unrelated: list[JsonObject] = []
    session.on_notification = unrelated.append
    await session.open(5)
    if not session.modern:
        assert transport.one_way.get_nowait()["method"] == "notifications/initialized"
    return session, unrelated


def result(message: JsonObject, value: Any = None) -> JsonObject:
    return {"jsonrpc": "2.0", "id": message["id"], "result": value if value is not None else {}}


def progress(token: Any, label: str) -> JsonObject:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": token, "progress": 1, "message": label},
    }


def log(label: str) -> JsonObject:
    return {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": label}}


class Relay:
    """A caller's notification handler that records what it was given."""

    def __init__(self) -> None:
        self.notes: list[JsonObject] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, message: JsonObject) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.notes.append(message)

    @property
    def labels(self) -> list[str]:
        return [str(n["params"].get("message") or n["params"].get("data")) for n in self.notes]


# -- the handshake ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_2025_handshake_is_initialize_then_initialized_then_the_listening_stream() -> None:
    transport = FakeTransport()
    session, _ = await opened(transport)
    assert transport.sent[0] == {
        "jsonrpc": "2.0",
        "id": transport.sent[0]["id"],
        "method": "initialize",
        "params": initialize_params(),
    }
    assert transport.sent[1] == {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert transport.listening == [None]  # the 2025 GET stream
    assert (session.modern, session.protocol_version, session.server_info) == (
        False,
        "2025-11-25",
        {"name": "fake", "version": "1"},
    )


@pytest.mark.anyio
@pytest.mark.parametrize("transport_class", [FakeTransport, InlineTransport])
async def test_the_2026_era_is_found_by_discover_and_every_request_carries_its_envelope(
    transport_class: type[FakeTransport],
) -> None:
    async def answer(transport: FakeTransport, message: JsonObject, call: PendingCall) -> None:
        await transport.deliver(result(message, {"tools": []}), call)

    transport = transport_class(exchange=answer, discover=DISCOVER_RESULT)
    session, _ = await opened(transport, "auto")
    assert session.modern and session.protocol_version == "2026-07-28"
    assert session.server_info == {"name": "fake-modern", "version": "2"}
    assert [m["method"] for m in transport.sent] == ["server/discover"]  # no initialize
    [subscribe] = transport.listening
    assert subscribe is not None and subscribe["method"] == "subscriptions/listen"
    assert subscribe["params"]["notifications"] == {"toolsListChanged": True}
    await session.request("tools/list", None, timeout=5, headers={"Mcp-Param-X": "1"})
    sent = transport.sent[-1]
    assert sent["params"]["_meta"] == {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    assert transport.headers[-1] == {"Mcp-Param-X": "1"}


@pytest.mark.anyio
async def test_a_server_without_discover_gets_initialize_unless_2026_is_required() -> None:
    session, _ = await opened(FakeTransport(), "auto")
    assert not session.modern
    with pytest.raises(UpstreamError, match="does not speak 2026-07-28"):
        await opened(FakeTransport(), "2026-07-28")


# -- server-to-client requests: one dispatch point -------------------------------------------


async def answer_of(transport: FakeTransport, request: JsonObject, origin: PendingCall | None) -> JsonObject:
    await transport.deliver(request, origin)
    return await asyncio.wait_for(transport.one_way.get(), 5)


@pytest.mark.anyio
@pytest.mark.parametrize("transport_class", [FakeTransport, InlineTransport])
async def test_ping_is_answered_and_other_server_requests_refused_the_same_on_every_transport(
    transport_class: type[FakeTransport],
) -> None:
    answers: list[JsonObject] = []

    async def exchange(transport: FakeTransport, message: JsonObject, call: PendingCall) -> None:
        for request in (
            {"jsonrpc": "2.0", "id": "p1", "method": "ping"},
            {"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage", "params": {}},
        ):
            answers.append(await answer_of(transport, request, call))
        await transport.deliver(result(message), call)

    transport = transport_class(exchange=exchange)
    session, _ = await opened(transport)
    # On the call's own stream (inline) or from the reader (the test's task, origin None).
    await session.request("tools/call", {"name": "t"}, timeout=5)
    answers.append(await answer_of(transport, {"jsonrpc": "2.0", "id": "p2", "method": "ping"}, None))
    refused = {
        "code": -32601,
        "message": "the gateway relays sampling/createMessage only to the client of a call in flight",
    }
    assert answers == [
        {"jsonrpc": "2.0", "id": "p1", "result": {}},
        {"jsonrpc": "2.0", "id": 9, "error": refused},
        {"jsonrpc": "2.0", "id": "p2", "result": {}},
    ]


@pytest.mark.anyio
async def test_the_server_request_hook_gets_the_call_it_belongs_to_where_known() -> None:
    seen: list[tuple[str, int | None]] = []

    async def handler(message: JsonObject, caller: PendingCall | None) -> JsonObject:
        seen.append((message["method"], caller.request_id if caller else None))
        if message["method"] == "roots/list":
            return {"result": {"roots": []}}
        raise RuntimeError("boom")

    answers: list[JsonObject] = []
    call_ids: list[int] = []

    async def exchange(transport: FakeTransport, message: JsonObject, call: PendingCall) -> None:
        call_ids.append(message["id"])
        request = {"jsonrpc": "2.0", "id": 1, "method": "roots/list"}
        answers.append(await answer_of(transport, request, call))
        await transport.deliver(result(message), call)

    transport = InlineTransport(exchange=exchange)
    session, _ = await opened(transport)
    session.server_requests = handler
    await session.request("tools/call", {"name": "t"}, timeout=5)
    # From a reader task the hook runs on a task of its own (the reader is never stalled).
    answers.append(
        await answer_of(transport, {"jsonrpc": "2.0", "id": 2, "method": "elicitation/create"}, None)
    )
    assert seen == [("roots/list", call_ids[0]), ("elicitation/create", None)]
    assert answers == [
        {"jsonrpc": "2.0", "id": 1, "result": {"roots": []}},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -32603, "message": "the gateway failed to answer"}},
    ]


# -- notifications ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_slow_caller_never_stalls_the_reader_and_each_caller_gets_its_own_progress() -> None:
    transport = FakeTransport()
    session, _ = await opened(transport)
    slow, quick = Relay(), Relay()
    slow.gate = asyncio.Event()  # this client reads nothing until released
    slow_call = asyncio.create_task(session.request("tools/call", {}, timeout=5, on_notification=slow))
    quick_call = asyncio.create_task(session.request("tools/call", {}, timeout=5, on_notification=quick))
    first = await transport.requests.get()
    second = await transport.requests.get()
    slow_token = first["params"]["_meta"]["progressToken"]
    quick_token = second["params"]["_meta"]["progressToken"]
    assert slow_token != quick_token
    reads = [("slow", slow_token), ("quick", quick_token)]
    messages = [progress(token, f"{who} {step}") for step in "12" for who, token in reads]
    for message in [*messages, result(first, {"who": "slow"}), result(second, {"who": "quick"})]:
        # Handed over by the reader (origin None), which must never wait for the slow client.
        await asyncio.wait_for(transport.deliver(message), 5)
    assert (await quick_call)["result"] == {"who": "quick"}
    assert quick.labels == ["quick 1", "quick 2"]
    assert not slow_call.done() and slow.labels == []
    slow.gate.set()
    assert (await slow_call)["result"] == {"who": "slow"}
    assert slow.labels == ["slow 1", "slow 2"]  # in order, and all before the answer


@pytest.mark.anyio
async def test_on_an_inline_exchange_notifications_are_relayed_as_they_arrive() -> None:
    """Tool "held" waits for the test; tool "chatty" sends progress and a log for itself, and
    progress for the held call, on its own stream."""
    release = asyncio.Event()
    tokens: dict[str, int] = {}
    relayed_before_answer: list[list[str]] = []
    chatty, held = Relay(), Relay()

    async def exchange(transport: FakeTransport, message: JsonObject, call: PendingCall) -> None:
        name = message["params"]["name"]
        tokens[name] = message["params"]["_meta"]["progressToken"]
        if name == "held":
            await release.wait()
        else:
            await transport.deliver(progress(tokens["chatty"], "mine"), call)
            await transport.deliver(log("my log"), call)
            await transport.deliver(progress(tokens["held"], "for the held call"), call)
            relayed_before_answer.append(list(chatty.labels))
        await transport.deliver(result(message), call)

    session, unrelated = await opened(InlineTransport(exchange=exchange))
    held_call = asyncio.create_task(
        session.request("tools/call", {"name": "held"}, timeout=5, on_notification=held)
    )
    while "held" not in tokens:
        await asyncio.sleep(0)
    await session.request("tools/call", {"name": "chatty"}, timeout=5, on_notification=chatty)
    assert relayed_before_answer == [["mine", "my log"]]  # on the caller's task, before the answer
    assert unrelated == []
    release.set()
    await held_call
    assert held.labels == ["for the held call"]  # queued for its own caller, relayed by it


@pytest.mark.anyio
@pytest.mark.parametrize("transport_class", [FakeTransport, InlineTransport])
async def test_notifications_outside_any_call_go_to_the_connection_handler(
    transport_class: type[FakeTransport],
) -> None:
    transport = transport_class()
    _, unrelated = await opened(transport)
    notes: list[JsonObject] = [
        {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"},
        {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///x"}},
        log("no call"),
    ]
    for note in notes:
        await transport.deliver(note)
    await transport.deliver(progress(12345, "nobody's"))  # no such call: dropped
    assert unrelated == notes


# -- answers, failures, cancellation --------------------------------------------------------


@pytest.mark.anyio
async def test_answers_reach_their_caller_by_id_and_an_unidentified_error_its_own_exchange() -> None:
    async def exchange(transport: FakeTransport, message: JsonObject, call: PendingCall) -> None:
        await transport.deliver({"jsonrpc": "2.0", "id": 999, "result": {}}, call)  # answers nothing
        error = {"code": -32700, "message": "parse error"}
        await transport.deliver({"jsonrpc": "2.0", "id": None, "error": error}, call)

    session, _ = await opened(InlineTransport(exchange=exchange))
    reply = await session.request("tools/call", {}, timeout=5)
    assert reply["error"] == {"code": -32700, "message": "parse error"}


@pytest.mark.anyio
async def test_an_inline_exchange_that_ends_without_an_answer_is_an_error() -> None:
    async def exchange(transport: FakeTransport, message: JsonObject, call: PendingCall) -> None:
        await transport.deliver(log("only a log"), call)

    session, _ = await opened(InlineTransport(exchange=exchange))
    with pytest.raises(UpstreamError, match="without an answer"):
        await session.request("tools/call", {}, timeout=5)


@pytest.mark.anyio
async def test_a_lost_transport_fails_the_calls_waiting_on_its_reader_and_refuses_new_ones() -> None:
    transport = FakeTransport()
    session, _ = await opened(transport)
    waiting = asyncio.create_task(session.request("tools/call", {}, timeout=5))
    await transport.requests.get()
    session.connection_lost("process exited with code 3")
    with pytest.raises(UpstreamClosed, match="code 3"):
        await waiting
    with pytest.raises(UpstreamUnreachable, match="code 3"):
        await session.request("tools/call", {}, timeout=5)
    assert session.is_closed and session.closed_reason == "process exited with code 3"


@pytest.mark.anyio
async def test_a_lost_transport_leaves_an_inline_exchange_to_finish() -> None:
    async def exchange(transport: FakeTransport, message: JsonObject, call: PendingCall) -> None:
        assert transport.session is not None
        transport.session.connection_lost("another exchange found the session gone")
        await transport.deliver(result(message, {"fine": True}), call)

    session, _ = await opened(InlineTransport(exchange=exchange))
    assert (await session.request("tools/call", {}, timeout=5))["result"] == {"fine": True}
    assert session.is_closed


def cancellations(transport: FakeTransport) -> list[JsonObject]:
    return [m for m in transport.sent if m.get("method") == "notifications/cancelled"]


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", ["2025-11-25", "auto"])
async def test_a_timeout_tells_a_2025_server_and_leaves_a_2026_exchange_abandoned(protocol: Protocol) -> None:
    transport = FakeTransport(discover=DISCOVER_RESULT)
    session, _ = await opened(transport, protocol)
    with pytest.raises(UpstreamRequestTimeout, match=r"no answer within 0\.01 s"):
        await session.request("tools/call", {}, timeout=0.01)  # never answered
    request_id = (await transport.requests.get())["id"]
    if session.modern:
        await asyncio.sleep(0)  # time for a notification task to run, had one been started
        assert cancellations(transport) == []
    else:
        await asyncio.wait_for(transport.one_way.get(), 5)
        assert cancellations(transport) == [
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": request_id, "reason": "timed out in the gateway"},
            }
        ]


@pytest.mark.anyio
@pytest.mark.parametrize("transport_class", [FakeTransport, InlineTransport])
async def test_cancelling_the_caller_cancels_the_request_upstream(
    transport_class: type[FakeTransport],
) -> None:
    entered = asyncio.Event()

    async def never(transport: FakeTransport, message: JsonObject, call: PendingCall) -> None:
        entered.set()
        await asyncio.Event().wait()

    transport = transport_class(exchange=never if transport_class is InlineTransport else None)
    session, _ = await opened(transport)
    call = asyncio.create_task(session.request("tools/call", {}, timeout=5))
    if transport_class is InlineTransport:
        await entered.wait()
    else:
        await transport.requests.get()
    request_id = transport.sent[-1]["id"]
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    note = await asyncio.wait_for(transport.one_way.get(), 5)
    assert note["method"] == "notifications/cancelled"
    assert note["params"] == {"requestId": request_id, "reason": "cancelled by the client"}
    await session.close()
    assert transport.closed
