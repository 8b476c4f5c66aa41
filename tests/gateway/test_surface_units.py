"""The pieces of the MCP surface in memory: listing upstreams, cursors, views and their freshness,
subscriptions and their bounds, the 2026 listen filter, and how a supervisor routes what an
upstream announces and keeps its subscriptions."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_gateway.errors import InvalidParams
from mcp_gateway.server.lists import decode_cursor, encode_cursor
from mcp_gateway.subscriptions import MAX_PENDING, ClientSurface, SubscriptionRegistry
from mcp_gateway.upstream.base import JsonObject, UpstreamConnection, UpstreamError
from mcp_gateway.upstream.listing import fetch_list
from mcp_gateway.upstream.session import JsonRpcSession
from mcp_gateway.upstream.supervisor import UpstreamSupervisor
from mcp_gateway.views import build_view
from policies.servers import StdioServerConfig
from tests.gateway.test_upstream_session import FakeTransport


class ScriptedConnection(UpstreamConnection):
    """Answers each request from ``answers[method]`` (a list, one per call) and records it."""

    def __init__(
        self, capabilities: JsonObject, answers: dict[str, list[JsonObject]], modern: bool = False
    ) -> None:
        super().__init__("fake")
        self.capabilities = capabilities
        self.answers = answers
        self.modern = modern
        self.requests: list[tuple[str, JsonObject | None]] = []

    async def open(self, timeout: float) -> None:
        pass

    async def request(self, method: str, params: JsonObject | None, **options: Any) -> JsonObject:
        self.requests.append((method, params))
        return self.answers[method].pop(0)

    async def close(self) -> None:
        pass


def reply(result: JsonObject) -> JsonObject:
    return {"jsonrpc": "2.0", "id": 1, "result": result}


@pytest.mark.anyio
async def test_a_list_is_fetched_page_by_page_with_the_smallest_ttl_of_its_pages() -> None:
    pages = [
        reply(
            {
                "resources": [{"uri": "a://1", "name": "1"}, {"name": "no uri"}],
                "nextCursor": "p2",
                "ttlMs": 900,
            }
        ),
        reply({"resources": [{"uri": "a://2", "name": "2"}, "junk"], "ttlMs": 400}),
    ]
    conn = ScriptedConnection({"resources": {}}, {"resources/list": pages})
    listing = await fetch_list(conn, "resources", 5, clock=lambda: 100.0)
    assert [item["uri"] for item in listing.items] == ["a://1", "a://2"]
    assert (listing.ttl_ms, listing.fetched_at, listing.expires_at()) == (400, 100.0, 100.4)
    assert conn.requests == [("resources/list", None), ("resources/list", {"cursor": "p2"})]


@pytest.mark.anyio
async def test_what_a_server_does_not_offer_is_not_asked_and_a_failing_optional_list_is_empty() -> None:
    conn = ScriptedConnection({"tools": {}}, {})
    assert (await fetch_list(conn, "prompts", 5)).items == []
    assert conn.requests == []
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope"}}
    conn = ScriptedConnection({"tools": {}, "prompts": {}}, {"prompts/list": [error], "tools/list": [error]})
    listing = await fetch_list(conn, "prompts", 5)
    assert (listing.items, listing.ttl_ms) == ([], None)
    with pytest.raises(UpstreamError, match="tools/list failed: nope"):
        await fetch_list(conn, "tools", 5)  # the tools are the core: a failed list is a failed start


def test_a_cursor_is_opaque_and_names_its_list() -> None:
    cursor = encode_cursor("prompts", "alpha__greet")
    assert "alpha" not in cursor
    assert decode_cursor("prompts", cursor) == "alpha__greet"
    for bad in (cursor, "!!!", "", 5, "x" * 5000):
        with pytest.raises(InvalidParams, match="Invalid cursor for tools/list"):
            decode_cursor("tools", bad)


def test_a_view_is_sorted_and_as_fresh_as_its_least_fresh_contributor() -> None:
    expiry = {"a": 150.0, "b": 120.0, "c": 110.0}
    entries = [("b__x", "b", {"name": "b__x"}), ("a__y", "a", {"name": "a__y"})]
    view = build_view(entries, expiry.__getitem__, now=100.0)
    assert view.keys == ["a__y", "b__x"] and view.items == [{"name": "a__y"}, {"name": "b__x"}]
    assert view.expires_at == 120.0  # c contributes nothing, so its freshness does not count
    assert (view.ttl_ms(100.0), view.ttl_ms(119.5), view.ttl_ms(130.0)) == (20_000, 500, 0)
    empty = build_view([], expiry.__getitem__, now=100.0)
    assert empty.ttl_ms(100.0) == 0
    again = build_view(list(reversed(entries)), expiry.__getitem__, now=100.0)
    assert again.signature == view.signature
    changed = build_view(
        [("a__y", "a", {"name": "a__y", "description": "new"})], expiry.__getitem__, now=100.0
    )
    assert changed.signature != build_view(entries[1:], expiry.__getitem__, now=100.0).signature


def test_a_client_surface_keeps_updates_deduplicated_and_bounded() -> None:
    released: list[ClientSurface] = []
    surface = ClientSurface(released.append)
    for i in range(MAX_PENDING + 5):
        surface.put(f"mcpgw://s/{i}")
    surface.put("mcpgw://s/7")
    updates = surface.take()
    assert len(updates) == MAX_PENDING and updates[0] == "mcpgw://s/5" and surface.take() == []
    surface.close()
    surface.close()
    assert released == [surface]  # once


def test_the_registry_counts_subscribers_per_upstream_resource() -> None:
    registry = SubscriptionRegistry()
    one, two = ClientSurface(lambda s: None), ClientSurface(lambda s: None)
    assert registry.add(one, "s", "a://x") is True
    assert registry.add(two, "s", "a://x") is False
    assert registry.add(two, "t", "b://y") is True
    assert registry.wanted("s") == {"a://x"}
    assert registry.deliver("s", "a://x") == 2 and registry.deliver("s", "a://other") == 0
    assert one.take() == two.take() == ["mcpgw://s/a://x"]
    assert registry.remove(one, "s", "a://x") is False
    assert registry.remove(one, "s", "a://x") is False  # not subscribed any more
    assert registry.remove_all(two) == {"s", "t"}
    assert registry.wanted("s") == registry.wanted("t") == frozenset()


@pytest.mark.anyio
async def test_a_2026_listen_asks_for_what_the_server_offers_and_the_wanted_resources() -> None:
    transport = FakeTransport()
    session = JsonRpcSession("fake", transport, protocol="2026-07-28")
    session.modern = True
    session.capabilities = {"tools": {"listChanged": True}, "prompts": {}, "resources": {"listChanged": True}}
    assert session.listen_filter({"a://x"}) == {"toolsListChanged": True, "resourcesListChanged": True}
    session.capabilities["resources"]["subscribe"] = True
    await session.listen_for({"a://y", "a://x"})
    [subscribe] = transport.listening
    assert subscribe is not None and subscribe["method"] == "subscriptions/listen"
    assert subscribe["params"]["notifications"] == {
        "toolsListChanged": True,
        "resourcesListChanged": True,
        "resourceSubscriptions": ["a://x", "a://y"],
    }
    session.capabilities = {}
    await session.listen_for({"a://x"})
    assert len(transport.listening) == 1  # nothing to listen for: the old stream stays


def supervisor(conn: ScriptedConnection) -> UpstreamSupervisor:
    config = StdioServerConfig(name="fake", command="true")
    return UpstreamSupervisor(config, lambda: None, connection_factory=lambda c: conn)


def test_the_supervisor_routes_what_the_upstream_announces() -> None:
    sup = supervisor(ScriptedConnection({}, {}))
    updated: list[str] = []
    sup.on_resource_updated = updated.append
    sup._on_notification({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"})
    sup._on_notification({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"})
    sup._on_notification({"method": "notifications/resources/updated", "params": {"uri": "a://x"}})
    sup._on_notification({"method": "notifications/resources/updated", "params": {"uri": 5}})
    sup._on_notification({"method": 7})
    assert sup._stale == {"resources", "resource_templates", "prompts"}
    assert updated == ["a://x"]


@pytest.mark.anyio
async def test_the_supervisor_keeps_a_2025_upstreams_subscriptions_equal_to_what_clients_want() -> None:
    ok = reply({})
    refused = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "no"}}
    conn = ScriptedConnection(
        {"resources": {"subscribe": True}},
        {"resources/subscribe": [ok, refused, ok, ok], "resources/unsubscribe": [ok]},
    )
    sup = supervisor(conn)
    sup.connection, sup.offered = conn, conn.capabilities
    wanted = {"a://1", "a://2"}
    sup.wanted_subscriptions = lambda: wanted
    await sup.sync_subscriptions()
    assert conn.requests == [
        ("resources/subscribe", {"uri": "a://1"}),
        ("resources/subscribe", {"uri": "a://2"}),
    ]
    wanted = {"a://1", "a://2"}
    await sup.sync_subscriptions()  # a://2 was refused: asked again
    wanted = {"a://2"}
    await sup.sync_subscriptions()
    assert conn.requests[2:] == [
        ("resources/subscribe", {"uri": "a://2"}),
        ("resources/unsubscribe", {"uri": "a://1"}),
    ]
    fresh = ScriptedConnection(conn.capabilities, {"resources/subscribe": [ok]})
    sup.connection = fresh  # a reconnect: the new session has no subscriptions yet
    await sup.sync_subscriptions()
    assert fresh.requests == [("resources/subscribe", {"uri": "a://2"})]
    sup.offered = {"resources": {}}
    wanted = {"a://3"}
    await sup.sync_subscriptions()  # the server offers no subscriptions: nothing is asked
    assert len(fresh.requests) == 1
