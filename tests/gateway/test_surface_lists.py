"""Merged lists through a real gateway: pages and cursors, and 2026 freshness hints merged from
upstreams that give different ones (HTTP upstreams with ``ttlMs``, a stdio one with none)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import (
    PYTHON,
    REPO_ROOT,
    RunningGateway,
    free_port,
    mcp_client,
    run_gateway,
    upstream_stdio,
)

KEY = "alice-secret-0123456789"
MODES = ["legacy", "2026-07-28"]


def surface_stdio(name: str) -> dict[str, Any]:
    server = upstream_stdio(name)
    server["args"] = [*server["args"], "--surface"]
    return server


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_long_lists_come_in_pages_that_add_up_to_the_whole_list(
    tmp_path: Path, keys_env: dict[str, str], mode: str
) -> None:
    config = {
        "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {
            "servers": [surface_stdio("alpha"), surface_stdio("beta")],
            "virtual_key_permissions": {"alice": "*"},
            "list_page_size": 2,
        },
    }
    async with run_gateway(config, tmp_path) as gw, mcp_client(gw.url, KEY, mode, cache=None) as client:
        for method, field, key in (
            (client.list_tools, "tools", "name"),
            (client.list_prompts, "prompts", "name"),
            (client.list_resources, "resources", "uri"),
        ):
            pages, cursor = [], None
            while True:
                page = await method(cursor=cursor)
                pages.append([getattr(item, key) for item in getattr(page, field)])
                cursor = page.next_cursor
                if cursor is None:
                    break
            names = [name for page in pages for name in page]
            assert all(len(page) == 2 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 2
            assert names == sorted(names) and len(set(names)) == len(names)
            everything = {
                "tools": [n for n in gw.runtime.hub.bindings],
                "prompts": list(gw.runtime.hub.prompts),
                "resources": list(gw.runtime.hub.resources),
            }[field]
            assert names == sorted(everything), field
        # The same cursor gives the same page again; a cursor is opaque and checked.
        first = await client.list_tools()
        again = await client.list_tools(cursor=first.next_cursor)
        assert again == await client.list_tools(cursor=first.next_cursor)
        for bad in ("not-a-cursor", first.next_cursor[:-3] + "xyz"):  # type: ignore[index]
            with pytest.raises(MCPError) as refused:
                await client.list_tools(cursor=bad)
            assert refused.value.error.code == -32602
            assert refused.value.error.message == "Invalid cursor for tools/list"
        with pytest.raises(MCPError):  # a cursor of another list
            await client.list_prompts(cursor=first.next_cursor)


@contextlib.contextmanager
def http_upstreams(tmp_path: Path, *servers: tuple[str, int]) -> Iterator[dict[str, str]]:
    """Test servers over streamable HTTP (2026-07-28) whose lists say ``ttlMs``."""
    procs, urls = [], {}
    try:
        for name, ttl in servers:
            port = free_port()
            argv = ["-m", "tests.fixtures.upstream", "--name", name, "--http", str(port), "--surface"]
            with (tmp_path / f"{name}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [PYTHON, *argv, "--list-ttl", str(ttl)],
                        cwd=REPO_ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls[name] = f"http://127.0.0.1:{port}/mcp"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                time.sleep(0.05)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def list_2026(gw: RunningGateway, key: str, method: str) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": method,
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"_meta": meta}}
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(gw.url, content=orjson.dumps(body), headers=headers)
    result: dict[str, Any] = orjson.loads(response.content)["result"]
    return result


@pytest.mark.anyio
async def test_merged_2026_lists_are_private_and_as_fresh_as_their_least_fresh_source(tmp_path: Path) -> None:
    keys = {
        "TEST_KEY_BOTH": "both-0123456789",
        "TEST_KEY_SLOW": "slow-0123456789",
        "TEST_KEY_MIX": "mix-0123456789",
    }
    with (
        pytest.MonkeyPatch.context() as mp,
        http_upstreams(tmp_path, ("slow", 600_000), ("quick", 300_000)) as urls,
    ):
        for name, value in keys.items():
            mp.setenv(name, value)
        config = {
            "virtual_keys": [{"id": name.lower()[9:], "secret_env": name} for name in keys],
            "mcp": {
                "servers": [
                    {"name": "slow", "url": urls["slow"]},
                    {"name": "quick", "url": urls["quick"]},
                    surface_stdio("plain"),
                ],
                "virtual_key_permissions": {
                    "both": ["slow", "quick"],
                    "slow": ["slow"],
                    "mix": ["slow", "plain"],
                },
            },
        }
        async with run_gateway(config, tmp_path) as gw:
            for method in ("tools/list", "resources/list", "resources/templates/list", "prompts/list"):
                both = await list_2026(gw, keys["TEST_KEY_BOTH"], method)
                slow = await list_2026(gw, keys["TEST_KEY_SLOW"], method)
                mix = await list_2026(gw, keys["TEST_KEY_MIX"], method)
                # The upstreams said "public"; a key's view is its own.
                assert {both["cacheScope"], slow["cacheScope"], mix["cacheScope"]} == {"private"}
                # The smallest ttl wins (what is left of it: the lists were fetched a moment ago).
                assert 0 < both["ttlMs"] <= 300_000, method
                assert 300_000 < slow["ttlMs"] <= 600_000, method
                assert mix["ttlMs"] == 0, method  # the stdio upstream promised nothing
