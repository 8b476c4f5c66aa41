"""Reloads under load: tools/call and /v1/messages from several clients while the policy file is
reloaded again and again. No request fails; a new permission is in the very next tools/list; the
connected clients of the key whose catalogue changed are told (a 2025-11-25 client on its GET
stream, a 2026-07-28 client on subscriptions/listen, both the SDK's own), and the clients of a key
whose catalogue did not change are told nothing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import mcp_client
from tests.gateway.reload_support import FileGateway, serve_policy_file, wait_for
from tests.gateway.test_reload import KEY_A, KEY_B, policy
from tests.llm_proxy.conftest import mock_api, provider_env  # noqa: F401  (a fixture)

ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "reload-load", "version": "1"},
}


def headers(key: str, method: str, name: str | None = None) -> dict[str, str]:
    found = {
        "Authorization": f"Bearer {key}",
        "MCP-Protocol-Version": "2026-07-28",
        "Accept": "application/json, text/event-stream",
        "Mcp-Method": method,
    }
    if name is not None:
        found["Mcp-Name"] = name
    return found


async def call_tool(http: httpx.AsyncClient, key: str, name: str, request_id: int) -> str | None:
    """None when the call succeeded, else what went wrong."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"text": "hi"}, "_meta": ENVELOPE},
    }
    response = await http.post("/mcp", json=body, headers=headers(key, "tools/call", name))
    if response.status_code != 200:
        return f"tools/call HTTP {response.status_code}: {response.text[:200]}"
    answer = response.json()
    if "error" in answer or answer["result"].get("isError"):
        return f"tools/call {answer}"
    return None


async def ask_model(http: httpx.AsyncClient, key: str) -> str | None:
    body = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    response = await http.post("/v1/messages", json=body, headers={"x-api-key": key})
    return (
        None if response.status_code == 200 else f"/v1/messages HTTP {response.status_code}: {response.text}"
    )


async def listed(http: httpx.AsyncClient, key: str) -> set[str]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ENVELOPE}}
    response = await http.post("/mcp", json=body, headers=headers(key, "tools/list"))
    return {tool["name"] for tool in response.json()["result"]["tools"]}


class Listeners:
    """A 2025 and a 2026 SDK client per key, counting the tools/list_changed each receives."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.stack = contextlib.AsyncExitStack()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, gw: FileGateway, who: str, key: str, key_id: str) -> None:
        async def on_message(message: Any) -> None:
            if (
                getattr(getattr(message, "root", message), "method", None)
                == "notifications/tools/list_changed"
            ):
                self.counts[f"{who}-2025"] += 1

        legacy = await self.stack.enter_async_context(
            mcp_client(gw.url, key, "legacy", message_handler=on_message)
        )
        await legacy.list_tools()
        sessions = gw.runtime.sessions._sessions.values()
        await wait_for(lambda: any(s.stream_open for s in sessions if s.principal.key_id == key_id))

        modern = await self.stack.enter_async_context(mcp_client(gw.url, key, "2026-07-28"))
        subscribed = asyncio.Event()

        async def listen() -> None:
            async with modern.listen(tools_list_changed=True) as subscription:
                subscribed.set()
                async for _event in subscription:
                    self.counts[f"{who}-2026"] += 1

        self.tasks.append(asyncio.create_task(listen()))
        await asyncio.wait_for(subscribed.wait(), 10)

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.stack.aclose()


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env")
async def test_reloads_under_load(tmp_path: Path) -> None:
    async with mock_api() as (_api, upstream):

        def doc(a_beta: bool, b_beta: bool = False) -> dict[str, Any]:
            found = policy(
                {"alpha": {}, "beta": {}},
                team_a=["alpha", "beta"] if a_beta else ["alpha"],
                team_b=["alpha", "beta"] if b_beta else ["alpha"],
            )
            found["providers"] = [
                {"name": "p", "kind": "anthropic", "base_url": upstream, "api_key_env": "TEST_PROVIDER_KEY"}
            ]
            found["routes"] = [{"match": "claude-*", "provider": "p"}]
            found["pricing"] = {"models": {"claude-*": {"input_per_mtok": 1, "output_per_mtok": 2}}}
            return found

        async with (
            serve_policy_file(doc(a_beta=False), tmp_path) as gw,
            httpx.AsyncClient(base_url=gw.base, timeout=30) as http,
        ):
            listeners = Listeners()
            await listeners.start(gw, "a", KEY_A, "ka")
            await listeners.start(gw, "b", KEY_B, "kb")
            failures: list[str] = []
            done = asyncio.Event()
            ids = itertools.count(1)
            served = Counter[str]()

            async def worker(key: str) -> None:
                while not done.is_set():
                    for problem in (
                        await call_tool(http, key, "alpha__echo", next(ids)),
                        await ask_model(http, key),
                    ):
                        if problem is not None:
                            failures.append(problem)
                    served[key] += 2

            workers = [asyncio.create_task(worker(key)) for key in (KEY_A, KEY_B, KEY_A, KEY_B)]
            try:
                for round_ in range(6):
                    granted = round_ % 2 == 0
                    record = await gw.reload(doc(a_beta=granted))
                    assert record.outcome == "applied", record
                    assert record.changes == {"permissions": ["team:a"]}, record.changes
                    names = await listed(http, KEY_A)
                    assert ("beta__echo" in names) is granted, names
                    if granted:
                        assert await call_tool(http, KEY_A, "beta__echo", next(ids)) is None
                    assert "beta__echo" not in await listed(http, KEY_B)
                    await asyncio.sleep(0.2)
                await wait_for(lambda: listeners.counts["a-2025"] >= 1 and listeners.counts["a-2026"] >= 1)

                # Only now does team b's catalogue change: its clients get exactly this one notification
                # (an earlier one would have arrived first on the same stream).
                assert listeners.counts["b-2025"] == listeners.counts["b-2026"] == 0
                record = await gw.reload(doc(a_beta=False, b_beta=True))
                assert record.changes == {"permissions": ["team:b"]}
                await wait_for(lambda: listeners.counts["b-2025"] >= 1 and listeners.counts["b-2026"] >= 1)
                assert listeners.counts["b-2025"] == listeners.counts["b-2026"] == 1, listeners.counts
                assert "beta__echo" in await listed(http, KEY_B)
            finally:
                done.set()
                await asyncio.gather(*workers)
                await listeners.aclose()
            assert failures == [], failures[:5]
            assert served[KEY_A] > 20 and served[KEY_B] > 20, served
            assert len(gw.reloader.history()) == 7
