"""An upstream on the older HTTP+SSE transport (the SDK's own SSE server), through the gateway,
for clients of either era: tools, progress, cancellation, timeouts, a dropped stream, a proxy."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import PYTHON, REPO_ROOT, free_port, mcp_client, run_gateway
from tests.fixtures.asgi_server import serve
from tests.fixtures.connect_proxy import ConnectProxy
from tests.fixtures.sse_upstream import sse_upstream_app
from tests.fixtures.tls import TestCA

pytestmark = pytest.mark.anyio
SSE_UPSTREAM = [PYTHON, "-m", "tests.fixtures.sse_upstream"]
KEY = "alice-secret-0123456789"


@dataclass
class SseUpstream:
    port: int
    markers: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sse"


@pytest.fixture
def sse_upstream(tmp_path: Path) -> Iterator[SseUpstream]:
    """The SDK's SSE server (``MCPServer.sse_app`` on uvicorn) in its own process."""
    port = free_port()
    markers = tmp_path / "markers"
    with (tmp_path / "upstream.log").open("wb") as log:
        process = subprocess.Popen(
            [*SSE_UPSTREAM, "--name", "web", "--port", str(port), "--marker-dir", str(markers)],
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
    yield SseUpstream(port, markers, process)
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {
            "servers": [{"name": "web", "transport": "sse", "url": url, **extra}],
            "virtual_key_permissions": {"alice": ["web"]},
        },
    }


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.05)


def text(result: Any) -> str:
    return str(result.content[0].text)


@pytest.mark.parametrize("client_mode", ["legacy", "2026-07-28"])
async def test_tools_and_progress_from_an_sse_upstream(
    tmp_path: Path, keys_env: dict[str, str], sse_upstream: SseUpstream, client_mode: str
) -> None:
    async with run_gateway(config(sse_upstream.url), tmp_path) as gw:
        supervisor = gw.runtime.hub.supervisors["web"]
        connection = supervisor.connection
        status = supervisor.status()
        assert (status["transport"], status["state"]) == ("sse", "ready")
        assert status["protocol_version"] == "2025-11-25"  # the newest both speak, over the old transport
        assert status["server_info"]["name"] == "web"
        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))

        callback: Any = on_progress
        async with mcp_client(gw.url, KEY, client_mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"web__echo", "web__slow", "web__rendezvous"} <= names
            assert text(await client.call_tool("web__echo", {"text": "over sse"})) == "over sse"
            assert text(await client.call_tool("web__add", {"a": 2, "b": 3})) == "5"
            slow = await client.call_tool("web__slow", {"seconds": 0.05}, progress_callback=callback)
            assert text(slow) == "slept 0.05"
            assert progress == [(0.0, "starting"), (0.05, "done")]

            async def meet() -> None:
                result = await client.call_tool("web__rendezvous", {"n": 4, "group": client_mode})
                assert text(result) == "met"

            async with anyio.create_task_group() as tg:  # concurrent calls share the one stream
                for _ in range(4):
                    tg.start_soon(meet)
            failed = await client.call_tool("web__fail", {"reason": "nope"})
            assert failed.is_error and text(failed).endswith("nope")
        assert supervisor.connection is connection  # one long-lived session for every call
        rows = [(r.tool, r.status) for r in await gw.flushed_calls()]
    assert ("echo", "ok") in rows and ("slow", "ok") in rows and ("fail", "tool_error") in rows


@pytest.mark.parametrize("client_mode", ["legacy", "2026-07-28"])
async def test_a_cancelled_call_is_cancelled_upstream(
    tmp_path: Path, keys_env: dict[str, str], sse_upstream: SseUpstream, client_mode: str
) -> None:
    async with (
        run_gateway(config(sse_upstream.url), tmp_path) as gw,
        mcp_client(gw.url, KEY, client_mode) as client,
    ):
        with anyio.move_on_after(1.0):
            await client.call_tool("web__slow", {"seconds": 30})
        # notifications/cancelled went to the message endpoint, and the tool stopped.
        await wait_for(lambda: (sse_upstream.markers / "web-slow-cancelled").exists())
        assert text(await client.call_tool("web__echo", {"text": "after"})) == "after"


async def test_a_call_that_times_out_is_cancelled_upstream(
    tmp_path: Path, keys_env: dict[str, str], sse_upstream: SseUpstream
) -> None:
    cfg = config(sse_upstream.url, timeout_seconds=0.5)
    async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY, "2026-07-28") as client:
        with pytest.raises(MCPError) as timed_out:
            await client.call_tool("web__hang", {})
        assert timed_out.value.error.code == -32001
        assert timed_out.value.error.message == "tool 'web__hang' on server 'web' did not answer within 0.5 s"
        await wait_for(lambda: (sse_upstream.markers / "web-hang-cancelled").exists())
        assert text(await client.call_tool("web__echo", {"text": "still here"})) == "still here"
        assert gw.runtime.hub.supervisors["web"].restarts == 0


async def test_a_dropped_stream_is_reconnected_and_the_tools_come_back(
    tmp_path: Path, keys_env: dict[str, str], sse_upstream: SseUpstream
) -> None:
    cfg = config(sse_upstream.url, max_restart_delay_seconds=0.5)
    async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY, "legacy") as client:
        supervisor = gw.runtime.hub.supervisors["web"]
        first = supervisor.connection
        assert text(await client.call_tool("web__echo", {"text": "1"})) == "1"
        started = anyio.Event()
        failure: list[MCPError] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            started.set()

        callback: Any = on_progress

        async def call_in_flight() -> None:
            with pytest.raises(MCPError) as cut:
                await client.call_tool("web__slow", {"seconds": 30}, progress_callback=callback)
            failure.append(cut.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call_in_flight)
            with anyio.fail_after(10):
                await started.wait()
            async with httpx2.AsyncClient() as http:
                dropped = await http.post(f"http://127.0.0.1:{sse_upstream.port}/drop-streams")
            assert dropped.text == "1"  # the gateway's one stream; the server itself stays up
        # The call's answer would have come on that stream: it fails at once, not at its timeout.
        assert failure[0].error.code == -32010
        assert "server 'web' failed during the call" in failure[0].error.message

        def reconnected() -> bool:
            return supervisor.state == "ready" and supervisor.connection not in (None, first)

        await wait_for(reconnected)
        assert supervisor.restarts == 1
        assert supervisor.last_error is not None and "event stream" in supervisor.last_error
        assert "web__echo" in {t.name for t in (await client.list_tools()).tools}
        assert text(await client.call_tool("web__echo", {"text": "2"})) == "2"


async def test_a_killed_server_fails_calls_retryably_then_comes_back(
    tmp_path: Path, keys_env: dict[str, str], sse_upstream: SseUpstream
) -> None:
    cfg = config(sse_upstream.url, max_restart_delay_seconds=0.5, health_interval_seconds=0.3)
    async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY, "2026-07-28") as client:
        supervisor = gw.runtime.hub.supervisors["web"]
        sse_upstream.process.kill()
        sse_upstream.process.wait(timeout=5)
        await wait_for(lambda: supervisor.state != "ready")
        with pytest.raises(MCPError) as down:
            await client.call_tool("web__echo", {"text": "while down"})
        assert down.value.error.code == -32010 and "web" in down.value.error.message
        assert "web__echo" in {t.name for t in (await client.list_tools()).tools}  # still listed
        restarted = subprocess.Popen(
            [*SSE_UPSTREAM, "--name", "web", "--port", str(sse_upstream.port)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_for(lambda: supervisor.state == "ready", 20)
            assert text(await client.call_tool("web__echo", {"text": "back"})) == "back"
        finally:
            restarted.kill()
            restarted.wait(timeout=5)


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> Any:
    async with ConnectProxy() as running:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)
        monkeypatch.setenv("HTTPS_PROXY", running.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # the test's own client talks to the gateway
        yield running


async def test_an_https_sse_upstream_through_an_egress_proxy(
    tmp_path: Path, keys_env: dict[str, str], proxy: ConnectProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """``upstream.test`` resolves only inside the test proxy: answers prove the stream and the POSTs
    went through its tunnel (TLS with the company CA inside it)."""
    caplog.set_level(logging.INFO)
    ca = TestCA(tmp_path / "ca")
    app = sse_upstream_app("web", any_host=True)
    async with serve(app, ca.issue("upstream")) as port:
        url = f"https://upstream.test:{port}/sse"
        cfg = config(url, tls={"ca_bundle": str(ca.cert_path)})
        async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY) as client:
            assert text(await client.call_tool("web__echo", {"text": "tunnelled"})) == "tunnelled"
    assert proxy.requests and set(proxy.requests) == {f"CONNECT upstream.test:{port}"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"HTTP client for https://upstream.test:{port}: httpx (proxy" in logged
