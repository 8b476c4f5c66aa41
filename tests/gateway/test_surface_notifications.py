"""list_changed and resources/updated through a real gateway: from stdio (2025) and HTTP (2026)
upstreams to concurrent SDK clients of both eras and different keys, each told only about its own
view (its keys' lists, the resources it subscribed to and may read).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
import pytest
from mcp.client.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import TextContent

from tests.conftest import (
    PYTHON,
    REPO_ROOT,
    RunningGateway,
    free_port,
    mcp_client,
    run_gateway,
    upstream_stdio,
)

ANNA, BEN, OPS = "anna-secret-0123456789", "ben-secret-0123456789", "ops-secret-0123456789"
ENV = {"TEST_KEY_ANNA": ANNA, "TEST_KEY_BEN": BEN, "TEST_KEY_OPS": OPS}


def surface_stdio(name: str) -> dict[str, Any]:
    server = upstream_stdio(name)
    server["args"] = [*server["args"], "--surface"]
    return server


@contextlib.contextmanager
def http_upstream(name: str, log: Path) -> Iterator[str]:
    """The test server with --surface over streamable HTTP (it speaks 2026-07-28)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "tests.fixtures.upstream", "--name", name, "--http", str(port), "--surface"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config(web_url: str) -> dict[str, Any]:
    return {
        "virtual_keys": [
            {"id": "anna", "secret_env": "TEST_KEY_ANNA"},
            {"id": "ben", "secret_env": "TEST_KEY_BEN"},
            {"id": "ops", "secret_env": "TEST_KEY_OPS"},
        ],
        "mcp": {
            "servers": [surface_stdio("alpha"), surface_stdio("beta"), {"name": "web", "url": web_url}],
            "virtual_key_permissions": {
                "anna": {"alpha": "*", "web": {"resources": ["res://web/readme"]}},
                "ben": {"beta": "*", "web": {"resources": ["res://web/secret"]}},
                "ops": "*",
            },
        },
    }


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV.items():
            mp.setenv(name, value)
        with http_upstream("web", tmp_path / "web.log") as url:
            async with run_gateway(config(url), tmp_path) as gw:
                assert gw.runtime.hub.supervisors["web"].connection.modern  # type: ignore[union-attr]
                yield gw


class Seen:
    """What one client was told, in order; `until` waits for something to arrive."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def until(self, predicate: Callable[[list[Any]], bool], timeout: float = 15.0) -> None:
        with anyio.fail_after(timeout):
            while not predicate(self.items):
                await anyio.sleep(0.02)


def legacy_recorder(seen: Seen) -> Any:
    """A legacy client's message handler: records (method, uri) of each notification."""

    async def handler(message: Any) -> None:
        root = getattr(message, "root", message)
        method = getattr(root, "method", None)
        if isinstance(method, str) and method.startswith("notifications/"):
            params = getattr(root, "params", None)
            seen.items.append((method, getattr(params, "uri", None)))

    return handler


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


def stream_open(gw: RunningGateway, key_id: str) -> bool:
    return any(s.stream_open for s in gw.runtime.sessions._sessions.values() if s.principal.key_id == key_id)


async def call(gw: RunningGateway, tool: str, arguments: dict[str, Any]) -> str:
    async with mcp_client(gw.url, OPS, "2026-07-28") as ops:
        result = await ops.call_tool(tool, arguments)
    content = result.content[0]
    assert isinstance(content, TextContent) and not result.is_error, result
    return content.text


@pytest.mark.anyio
async def test_list_changes_reach_only_the_clients_whose_view_changed(gateway: RunningGateway) -> None:
    """anna (2025 session, GET stream) sees alpha; ben (2026 listen) sees beta. Each change is told
    to its own client only: a later change is the barrier that proves the earlier one did not leak."""
    anna_seen, ben_seen = Seen(), Seen()
    async with (
        mcp_client(gateway.url, ANNA, "legacy", message_handler=legacy_recorder(anna_seen)) as anna,
        mcp_client(gateway.url, BEN, "2026-07-28") as ben,
        ben.listen(tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True) as sub,
        anyio.create_task_group() as tasks,
    ):
        assert sub.honored.tools_list_changed and sub.honored.prompts_list_changed
        assert sub.honored.resources_list_changed

        async def collect() -> None:
            async for event in sub:
                ben_seen.items.append(event)

        tasks.start_soon(collect)
        await wait_for(lambda: stream_open(gateway, "anna"))
        assert [p.name for p in (await anna.list_prompts()).prompts] == ["alpha__cite", "alpha__greet"]

        await call(gateway, "alpha__add_prompt", {"prompt_name": "fresh"})
        await anna_seen.until(lambda items: ("notifications/prompts/list_changed", None) in items)
        assert "alpha__fresh" in [p.name for p in (await anna.list_prompts()).prompts]

        await call(gateway, "beta__add_resource", {"path": "new"})
        await ben_seen.until(lambda items: ResourcesListChanged() in items)
        uris = [r.uri for r in (await ben.list_resources()).resources]
        assert "mcpgw://beta/res://beta/new" in uris

        # A 2026 upstream's change arrives on the gateway's listen stream; no key here sees web's prompts.
        await call(gateway, "web__add_prompt", {"prompt_name": "late"})
        await wait_for(lambda: "web__late" in gateway.runtime.hub.prompts)

        await call(gateway, "beta__grow", {"tool_name": "sprout"})
        await ben_seen.until(lambda items: ToolsListChanged() in items)
        await call(gateway, "alpha__grow", {"tool_name": "shoot"})
        await anna_seen.until(lambda items: ("notifications/tools/list_changed", None) in items)

        # Ben never heard of alpha's prompt (the first change); anna never of beta's resource or tool.
        assert PromptsListChanged() not in ben_seen.items
        assert ben_seen.items == [ResourcesListChanged(), ToolsListChanged()]
        assert anna_seen.items == [
            ("notifications/prompts/list_changed", None),
            ("notifications/tools/list_changed", None),
        ]
        tasks.cancel_scope.cancel()


async def subscribe_2025(client: Any, uri: str) -> None:
    with warnings.catch_warnings():  # deprecated as of 2026-07-28, still 2025's way
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.subscribe_resource(uri)


async def unsubscribe_2025(client: Any, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.unsubscribe_resource(uri)


@pytest.mark.anyio
async def test_resource_updates_reach_their_subscribers_only(gateway: RunningGateway) -> None:
    alpha_readme, beta_readme = "mcpgw://alpha/res://alpha/readme", "mcpgw://beta/res://beta/readme"
    web_readme, web_secret = "mcpgw://web/res://web/readme", "mcpgw://web/res://web/secret"
    anna_seen, idle_seen, ben_seen = Seen(), Seen(), Seen()
    async with (
        mcp_client(gateway.url, ANNA, "legacy", message_handler=legacy_recorder(anna_seen)) as anna,
        mcp_client(gateway.url, ANNA, "legacy", message_handler=legacy_recorder(idle_seen)),
        mcp_client(gateway.url, BEN, "2026-07-28") as ben,
        # ben asks for alpha's readme too, which his key may not read: accepted, never delivered.
        ben.listen(resource_subscriptions=[beta_readme, web_secret, alpha_readme]) as sub,
        anyio.create_task_group() as tasks,
    ):
        assert sub.honored.resource_subscriptions == [beta_readme, web_secret, alpha_readme]

        async def collect() -> None:
            async for event in sub:
                ben_seen.items.append(event)

        tasks.start_soon(collect)
        await wait_for(lambda: stream_open(gateway, "anna"))
        await subscribe_2025(anna, alpha_readme)
        await subscribe_2025(anna, web_readme)
        # The gateway subscribed upstream: alpha (2025) by resources/subscribe, web (2026) by listen.
        assert await call(gateway, "alpha__subscriptions", {}) == "res://alpha/readme"
        assert gateway.runtime.hub.subscriptions.wanted("web") == {"res://web/readme", "res://web/secret"}

        await call(gateway, "alpha__touch", {"uri": "res://alpha/readme"})
        await anna_seen.until(lambda items: ("notifications/resources/updated", alpha_readme) in items)
        await call(gateway, "beta__touch", {"uri": "res://beta/readme"})
        await ben_seen.until(lambda items: ResourceUpdated(beta_readme) in items)
        await call(gateway, "web__touch", {"uri": "res://web/readme"})
        await anna_seen.until(lambda items: ("notifications/resources/updated", web_readme) in items)
        await call(gateway, "web__touch", {"uri": "res://web/secret"})
        await ben_seen.until(lambda items: ResourceUpdated(web_secret) in items)
        await call(gateway, "alpha__touch", {"uri": "res://alpha/secret"})  # nobody subscribed
        await call(gateway, "beta__touch", {"uri": "res://beta/readme"})  # a barrier for ben
        await ben_seen.until(lambda items: len(items) == 3)

        assert ben_seen.items == [
            ResourceUpdated(beta_readme),
            ResourceUpdated(web_secret),
            ResourceUpdated(beta_readme),
        ]
        updates = [uri for method, uri in anna_seen.items if method == "notifications/resources/updated"]
        assert updates == [alpha_readme, web_readme]
        assert idle_seen.items == []  # anna's other session subscribed to nothing

        await unsubscribe_2025(anna, alpha_readme)
        assert await call(gateway, "alpha__subscriptions", {}) == ""
        tasks.cancel_scope.cancel()
    # Every subscriber gone: no upstream subscription is left behind.
    await wait_for(lambda: not gateway.runtime.hub.subscriptions.wanted("web"))
    assert await call(gateway, "alpha__subscriptions", {}) == ""


@pytest.mark.anyio
async def test_subscriptions_are_renewed_when_an_upstream_comes_back(gateway: RunningGateway) -> None:
    readme = "mcpgw://alpha/res://alpha/readme"
    seen = Seen()
    supervisor = gateway.runtime.hub.supervisors["alpha"]
    async with mcp_client(gateway.url, ANNA, "legacy", message_handler=legacy_recorder(seen)) as anna:
        await wait_for(lambda: stream_open(gateway, "anna"))
        await subscribe_2025(anna, readme)
        async with mcp_client(gateway.url, OPS, "2026-07-28") as ops:
            with pytest.raises(MCPError):
                await ops.call_tool("alpha__crash", {})
        await wait_for(lambda: supervisor.restarts >= 1 and supervisor.state == "ready", 30)
        # The new upstream process was told again what the gateway's clients want.
        assert await call(gateway, "alpha__subscriptions", {}) == "res://alpha/readme"
        await call(gateway, "alpha__touch", {"uri": "res://alpha/readme"})
        await seen.until(lambda items: ("notifications/resources/updated", readme) in items)


@pytest.mark.anyio
async def test_a_get_stream_opened_late_is_told_what_changed_since_the_client_listed(
    gateway: RunningGateway,
) -> None:
    headers = {
        "Authorization": f"Bearer {ANNA}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }

    def message(id_: int | None, method: str, params: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        if id_ is not None:
            body["id"] = id_
        return orjson.dumps(body)

    async with httpx2.AsyncClient(timeout=30) as http:
        init = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }
        opened = await http.post(gateway.url, content=message(1, "initialize", init), headers=headers)
        headers |= {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        await http.post(gateway.url, content=message(None, "notifications/initialized"), headers=headers)
        listed = await http.post(gateway.url, content=message(2, "prompts/list"), headers=headers)
        assert "alpha__later" not in listed.text
        await call(gateway, "alpha__add_prompt", {"prompt_name": "later"})
        await wait_for(lambda: "alpha__later" in gateway.runtime.hub.prompts)
        async with http.stream("GET", gateway.url, headers=headers) as stream:
            events = []
            with anyio.fail_after(10):
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        events.append(orjson.loads(line[6:])["method"])
                        break
    assert events == ["notifications/prompts/list_changed"]
