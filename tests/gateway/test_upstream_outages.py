"""A restarting upstream is not an unknown tool, and one failed exchange does not drop a catalogue.

A permitted call to a server that is down gets a retryable -32010 naming it (audited
upstream_unavailable); a key that may not see the tool gets exactly the unknown-tool answer,
whether the server is up or down. The catalogue keeps a down server's last-known tools.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import PYTHON, REPO_ROOT, RunningGateway, free_port, mcp_client, run_gateway

ALICE, BOB = "alice-secret-0123456789", "bob-secret-0123456789"
MODERN = {"MCP-Protocol-Version": "2026-07-28", "Accept": "application/json, text/event-stream"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}


def keys(servers: list[dict[str, Any]], server: str) -> dict[str, Any]:
    """Alice may use every tool of ``server``; Bob only its ``add``."""
    return {
        "virtual_keys": [
            {"id": "alice", "secret_env": "TEST_KEY_ALICE"},
            {"id": "bob", "secret_env": "TEST_KEY_BOB"},
        ],
        "mcp": {
            "servers": servers,
            "virtual_key_permissions": {"alice": "*", "bob": {server: ["add"]}},
        },
    }


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def raw_call(gw: RunningGateway, key: str, name: str) -> tuple[int, bytes]:
    """A 2026 tools/call as raw bytes: the exact answer a client sees."""
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"text": "hi"}, "_meta": ENVELOPE},
    }
    headers = {**MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name, "Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(gw.url, content=orjson.dumps(body), headers=headers)
    return response.status_code, response.content


def gated_stdio(tmp_path: Path, name: str) -> tuple[dict[str, Any], Path]:
    """The test upstream over stdio, which starts only while its flag file exists."""
    flag = tmp_path / f"{name}-may-start"
    flag.write_text("go")
    script = tmp_path / f"{name}.py"
    script.write_text(
        "import os, sys, runpy\n"
        "sys.path.insert(0, os.getcwd())\n"
        f"if not os.path.exists({str(flag)!r}):\n"
        "    sys.exit('not now')\n"
        f"sys.argv = ['upstream', '--name', {name!r}]\n"
        "runpy.run_module('tests.fixtures.upstream', run_name='__main__')\n"
    )
    entry = {
        "name": name,
        "command": PYTHON,
        "args": [str(script)],
        "cwd": str(REPO_ROOT),
        "max_restart_delay_seconds": 0.5,
    }
    return entry, flag


@pytest.mark.anyio
async def test_a_restarting_stdio_upstream_is_unavailable_to_permitted_keys_and_unknown_to_others(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    alpha_entry, flag = gated_stdio(tmp_path, "alpha")
    async with run_gateway(keys(servers=[alpha_entry], server="alpha"), tmp_path) as gw:
        alpha = gw.runtime.hub.supervisors["alpha"]
        bob_hidden_up = await raw_call(gw, BOB, "alpha__echo")
        bob_unknown_up = await raw_call(gw, BOB, "alpha__nope")
        assert orjson.loads(bob_hidden_up[1])["error"] == {
            "code": -32602,
            "message": "Unknown tool: 'alpha__echo'",
        }
        async with mcp_client(gw.url, ALICE, "2026-07-28") as client:
            listed_up = await client.list_tools()
        version = gw.runtime.hub.version

        # The child dies and cannot come back until the flag returns: the server is restarting.
        flag.unlink()
        os.kill(alpha.status()["pid"], signal.SIGKILL)
        await wait_for(lambda: alpha.state != "ready")

        _, body = await raw_call(gw, ALICE, "alpha__echo")
        error = orjson.loads(body)["error"]
        assert error["code"] == -32010
        assert error["message"].startswith("server 'alpha' is unavailable (")
        assert error["data"] == {"server": "alpha", "retryable": True}
        async with mcp_client(gw.url, ALICE, "legacy") as client:
            with pytest.raises(MCPError) as legacy:
                await client.call_tool("alpha__echo", {"text": "hi"})
            assert (legacy.value.error.code, legacy.value.error.data) == (-32010, error["data"])
        async with mcp_client(gw.url, ALICE, "2026-07-28") as client:
            assert await client.list_tools() == listed_up  # the catalogue did not change
        assert gw.runtime.hub.version == version  # so no list_changed went out either

        # A key that may not see the tool gets byte for byte what it got while the server was up.
        assert await raw_call(gw, BOB, "alpha__echo") == bob_hidden_up
        assert await raw_call(gw, BOB, "alpha__nope") == bob_unknown_up

        flag.write_text("go")
        await wait_for(lambda: alpha.state == "ready")
        async with mcp_client(gw.url, ALICE, "2026-07-28") as client:
            back = await client.call_tool("alpha__echo", {"text": "back"})
            assert back.content[0].text == "back"  # type: ignore[union-attr]
        rows = [r for r in await gw.flushed_calls() if r.exposed_name in ("alpha__echo", "alpha__nope")]
    summary = [(r.key_id, r.exposed_name, r.status, r.server, r.tool) for r in rows]
    assert summary == [
        ("bob", "alpha__echo", "denied", "alpha", "echo"),
        ("bob", "alpha__nope", "denied", None, None),
        ("alice", "alpha__echo", "upstream_unavailable", "alpha", "echo"),
        ("alice", "alpha__echo", "upstream_unavailable", "alpha", "echo"),
        ("bob", "alpha__echo", "denied", "alpha", "echo"),
        ("bob", "alpha__nope", "denied", None, None),
        ("alice", "alpha__echo", "ok", "alpha", "echo"),
    ]
    assert "server 'alpha' is unavailable" in (rows[2].error or "")


class CuttingProxy:
    """A loopback TCP proxy to an upstream that cuts the first response carrying ``marker`` mid-body:
    the bytes before the marker reach the gateway, then the connection is aborted."""

    def __init__(self, target_port: int, marker: bytes) -> None:
        self.target_port = target_port
        self.marker = marker
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        try:
            await asyncio.gather(
                self._pipe(client_reader, up_writer, watch=False),
                self._pipe(up_reader, client_writer, watch=True),
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            client_writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool) -> None:
        tail = b""
        while data := await reader.read(65536):
            if watch and self.cuts == 0:
                seen = tail + data
                at = seen.find(self.marker)
                if at >= 0:
                    writer.write(data[: max(0, at - len(tail))])
                    await writer.drain()
                    self.cuts += 1
                    raise OSError("cut")
                tail = seen[-len(self.marker) :]
            writer.write(data)
            await writer.drain()
        writer.write_eof()


@pytest.fixture
def http_upstream(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    with (tmp_path / "upstream.log").open("wb") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "tests.fixtures.upstream", "--name", "web", "--http", str(port)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            await asyncio.sleep(0.05)


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", ["2026-07-28", "2025-11-25"])
async def test_one_cut_http_response_fails_that_call_only(
    tmp_path: Path, keys_env: dict[str, str], http_upstream: tuple[int, Any], protocol: str
) -> None:
    upstream_port, _ = http_upstream
    await wait_port(upstream_port)
    proxy = CuttingProxy(upstream_port, b"cut-this-response")
    port = await proxy.start()
    web = {"name": "web", "url": f"http://127.0.0.1:{port}/mcp", "protocol": protocol}
    try:
        async with run_gateway(keys(servers=[web], server="web"), tmp_path) as gw:
            supervisor = gw.runtime.hub.supervisors["web"]
            version, probes = gw.runtime.hub.version, supervisor.probes
            async with (
                mcp_client(gw.url, ALICE, "2026-07-28") as alice,
                mcp_client(gw.url, BOB, "legacy") as bob,
            ):
                listed = (await alice.list_tools(), await bob.list_tools())
                with pytest.raises(MCPError) as cut:
                    await alice.call_tool("web__echo", {"text": "cut-this-response"})
                assert proxy.cuts == 1
                assert cut.value.error.code == -32010
                assert cut.value.error.message.startswith("server 'web' failed during the call: ")
                assert cut.value.error.data == {"server": "web", "retryable": False}

                # The failure asked for an early health check; it passed, so nothing else changed.
                await wait_for(lambda: supervisor.probes > probes or supervisor.state != "ready")
                assert (supervisor.state, supervisor.restarts) == ("ready", 0)
                assert gw.runtime.hub.version == version  # no list_changed
                assert (await alice.list_tools(), await bob.list_tools()) == listed
                again = await alice.call_tool("web__echo", {"text": "whole"})
                assert again.content[0].text == "whole"  # type: ignore[union-attr]
            rows = [r for r in await gw.flushed_calls() if r.exposed_name == "web__echo"]
    finally:
        await proxy.close()
    assert [(r.status, r.server, r.tool) for r in rows] == [
        ("upstream_error", "web", "echo"),
        ("ok", "web", "echo"),
    ]
    assert "failed during the call" in (rows[0].error or "")


@pytest.mark.anyio
async def test_a_refused_http_upstream_is_unavailable_and_its_health_check_takes_it_down(
    tmp_path: Path, keys_env: dict[str, str], http_upstream: tuple[int, Any]
) -> None:
    port, proc = http_upstream
    await wait_port(port)
    web = {
        "name": "web",
        "url": f"http://127.0.0.1:{port}/mcp",
        "max_restart_delay_seconds": 0.5,
        "health_interval_seconds": 600,  # only the early check the failed call asks for can run
    }
    async with run_gateway(keys(servers=[web], server="web"), tmp_path) as gw:
        supervisor = gw.runtime.hub.supervisors["web"]
        async with mcp_client(gw.url, ALICE, "2026-07-28") as alice:
            assert (await alice.call_tool("web__echo", {"text": "1"})).content[0].text == "1"  # type: ignore[union-attr]
            proc.kill()  # gone without a goodbye: connections are refused from now on
            proc.wait(timeout=5)
            with pytest.raises(MCPError) as refused:
                await alice.call_tool("web__echo", {"text": "2"})
            assert refused.value.error.code == -32010
            assert refused.value.error.message.startswith("server 'web' is unavailable (")
            assert refused.value.error.data == {"server": "web", "retryable": True}
            # The early health check finds nobody listening: the server is down, its tools stay.
            await wait_for(lambda: supervisor.state != "ready")
            assert "web__echo" in {t.name for t in (await alice.list_tools()).tools}
        rows = [r for r in await gw.flushed_calls() if r.exposed_name == "web__echo"]
    assert [(r.status, r.server, r.tool) for r in rows] == [
        ("ok", "web", "echo"),
        ("upstream_unavailable", "web", "echo"),
    ]
