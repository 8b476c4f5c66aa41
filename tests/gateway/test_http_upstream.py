"""A real streamable-HTTP upstream on loopback, spoken to in either protocol era."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import PYTHON, REPO_ROOT, free_port, mcp_client, run_gateway

KEY = "alice-secret-0123456789"


@pytest.fixture
def http_upstream(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    with (tmp_path / "upstream.log").open("wb") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "tests.fixtures.upstream", "--name", "web", "--http", str(port)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp", proc
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def config(url: str, protocol: str, **extra: object) -> dict[str, object]:
    return {
        "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {
            "servers": [
                {
                    "name": "web",
                    "url": url,
                    "protocol": protocol,
                    "headers": {"X-Upstream-Token": "${UPSTREAM_TOKEN:-none}"},
                    **extra,
                }
            ],
            "virtual_key_permissions": {"alice": ["web"]},
        },
    }


@pytest.mark.anyio
@pytest.mark.parametrize(("protocol", "expected"), [("auto", "2026-07-28"), ("2025-11-25", "2025-11-25")])
@pytest.mark.parametrize("client_mode", ["legacy", "2026-07-28"])
async def test_http_upstream_in_either_era(
    tmp_path: Path,
    keys_env: dict[str, str],
    http_upstream: tuple[str, subprocess.Popen[bytes]],
    protocol: str,
    expected: str,
    client_mode: str,
) -> None:
    url, _ = http_upstream
    async with run_gateway(config(url, protocol), tmp_path) as gw:
        supervisor = gw.runtime.hub.supervisors["web"]
        connection = supervisor.connection
        status = supervisor.status()
        assert status["protocol_version"] == expected
        assert status["server_info"]["name"] == "web"
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        progress_callback: Any = on_progress

        async with mcp_client(gw.url, KEY, client_mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"web__echo", "web__slow", "web__add"} <= names
            echoed = await client.call_tool("web__echo", {"text": "over http"})
            assert echoed.content[0].text == "over http"  # type: ignore[union-attr]
            # The upstream's own identity never leaks into a 2026 result: the gateway stamps its own.
            if client_mode == "2026-07-28":
                assert echoed.meta == {
                    "io.modelcontextprotocol/serverInfo": {
                        "name": "mcp-gateway",
                        "title": "MCP Gateway",
                        "version": "0.1.0",
                    }
                }
            slow = await client.call_tool("web__slow", {"seconds": 0.05}, progress_callback=progress_callback)
            assert slow.content[0].text == "slept 0.05"  # type: ignore[union-attr]
            assert progress == [0.0, 0.05]

            async def call(i: int) -> None:
                result = await client.call_tool(
                    "web__rendezvous", {"n": 5, "group": f"{protocol}-{client_mode}"}
                )
                assert result.content[0].text == "met"  # type: ignore[union-attr]

            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(call, i)
        # One long-lived upstream session, reused by every call (never a session per call).
        assert supervisor.connection is connection
        pool = connection.transport._pool  # type: ignore[union-attr]
        assert pool is not None and pool.open_connections <= 6  # five concurrent calls + the listen stream


@pytest.mark.anyio
async def test_http_upstream_down_then_back(
    tmp_path: Path, keys_env: dict[str, str], http_upstream: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, proc = http_upstream
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    cfg = config(url, "auto", health_interval_seconds=0.3, max_restart_delay_seconds=0.5, timeout_seconds=5)
    async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY, "2026-07-28") as client:
        assert (await client.call_tool("web__echo", {"text": "1"})).content[0].text == "1"  # type: ignore[union-attr]
        proc.kill()  # dies without a goodbye
        proc.wait(timeout=5)
        with pytest.raises(MCPError) as down:
            await client.call_tool("web__echo", {"text": "2"})
        assert "web" in down.value.error.message
        supervisor = gw.runtime.hub.supervisors["web"]

        def state() -> str:
            return supervisor.state

        with anyio.fail_after(10):
            while state() == "ready":
                await anyio.sleep(0.05)
        # Its last-known tools stay listed while it is away (no list_changed churn for clients).
        assert "web__echo" in {t.name for t in (await client.list_tools()).tools}

        restarted = subprocess.Popen(
            [PYTHON, "-m", "tests.fixtures.upstream", "--name", "web", "--http", str(port)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with anyio.fail_after(20):
                while state() != "ready":
                    await anyio.sleep(0.05)
            assert (await client.call_tool("web__echo", {"text": "3"})).content[0].text == "3"  # type: ignore[union-attr]
        finally:
            restarted.kill()
            restarted.wait(timeout=5)
