"""The upstream session behaves the same over stdio and streamable HTTP (real SDK servers).

Before there was one session, each transport carried its own JSON-RPC logic and they
drifted: over HTTP a server's ``ping`` was refused, and a server request on the listening
stream was never answered at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mcp_gateway.upstream.base import JsonObject, UpstreamConnection
from mcp_gateway.upstream.supervisor import make_connection
from policies.servers import HttpServerConfig, StdioServerConfig
from tests.conftest import PYTHON, REPO_ROOT, free_port

UPSTREAM = ["-m", "tests.fixtures.upstream", "--name", "up", "--client-side"]
TRANSPORTS = ["stdio", "http-2025", "http-2026"]


@dataclass
class Upstreams:
    """The test upstream: spawned over stdio per session, or one HTTP server for the module."""

    http_url: str
    markers: Path
    """Where the upstreams mark what they saw (e.g. ``up-slow-cancelled``)."""
    unrelated: list[JsonObject] = field(default_factory=list)
    """Notifications the session passed to the connection-level handler."""

    @contextlib.asynccontextmanager
    async def session(self, transport: str) -> AsyncIterator[UpstreamConnection]:
        config: StdioServerConfig | HttpServerConfig
        if transport == "stdio":
            args = [*UPSTREAM, "--marker-dir", str(self.markers)]
            config = StdioServerConfig(name="up", command=PYTHON, args=args, cwd=str(REPO_ROOT))
        else:
            protocol = "2025-11-25" if transport == "http-2025" else "2026-07-28"
            config = HttpServerConfig(name="up", url=self.http_url, protocol=protocol)
        conn = make_connection(config)
        conn.on_notification = self.unrelated.append
        try:
            await conn.open(30)
            assert conn.modern == (transport == "http-2026")
            yield conn
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def http_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    port = free_port()
    markers = tmp_path_factory.mktemp("markers")
    with (markers.parent / "upstream.log").open("wb") as log:
        proc = subprocess.Popen(
            [PYTHON, *UPSTREAM, "--http", str(port), "--marker-dir", str(markers)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            assert time.monotonic() < deadline, "the HTTP upstream did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp", markers
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def upstreams(http_upstream: tuple[str, Path]) -> Upstreams:
    url, markers = http_upstream
    return Upstreams(url, markers)


async def call_tool(conn: UpstreamConnection, name: str, arguments: JsonObject, **options: Any) -> JsonObject:
    reply = await conn.request("tools/call", {"name": name, "arguments": arguments}, timeout=30, **options)
    assert "result" in reply, reply
    result: JsonObject = reply["result"]
    return result


def text(result: JsonObject) -> str:
    return str(result["content"][0]["text"])


@pytest.mark.anyio
@pytest.mark.parametrize("related", [True, False], ids=["on-the-call", "on-the-connection"])
async def test_server_requests_get_the_same_answer_over_stdio_and_http(
    upstreams: Upstreams, related: bool
) -> None:
    """``ping`` is answered, anything else refused with -32601: the same, whichever the transport
    and whichever stream carried the request (the call's own, or the connection's)."""
    answers: dict[str, dict[str, str]] = {}
    for transport in ("stdio", "http-2025"):
        async with upstreams.session(transport) as conn:
            answers[transport] = {
                method: text(await call_tool(conn, "ask_client", {"method": method, "related": related}))
                for method in ("ping", "roots/list")
            }
    expected = {
        "ping": "answered",
        "roots/list": "error -32601: the gateway relays roots/list only to the client of a call in flight",
    }
    assert answers == {"stdio": expected, "http-2025": expected}


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_progress_and_logs_reach_the_right_one_of_two_concurrent_callers(
    upstreams: Upstreams, transport: str
) -> None:
    notes: dict[str, list[tuple[str, str]]] = {"A": [], "B": []}

    def relay(label: str) -> Any:
        async def on_notification(message: JsonObject) -> None:
            params = message["params"]
            kind = "progress" if message["method"] == "notifications/progress" else "log"
            notes[label].append((kind, str(params.get("message") or params.get("data"))))

        return on_notification

    group = f"two-callers-{transport}"
    async with upstreams.session(transport) as conn:
        results = await asyncio.gather(
            *(
                call_tool(
                    conn, "chatty", {"label": label, "n": 3, "group": group}, on_notification=relay(label)
                )
                for label in ("A", "B")
            )
        )
    assert [text(r) for r in results] == ["A", "B"]
    unrelated_logs = [m for m in upstreams.unrelated if m["method"] == "notifications/message"]
    for label in ("A", "B"):
        progress = [message for kind, message in notes[label] if kind == "progress"]
        logs = [message for kind, message in notes[label] if kind == "log"]
        assert progress == [f"{label} 0", f"{label} 1", f"{label} 2"]
        if transport == "http-2025":
            # A log message that came on a call's own response stream belongs to that call.
            assert logs == [f"{label} 0", f"{label} 1", f"{label} 2"]
        else:
            # stdio carries no relation between a log message and a request (and a 2026 server
            # sends log messages only to a request that opted in): none is passed to a caller.
            assert logs == []
    if transport == "stdio":
        assert sorted(m["params"]["data"] for m in unrelated_logs) == sorted(
            f"{label} {i}" for label in ("A", "B") for i in range(3)
        )
    else:
        assert unrelated_logs == []


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_progress_is_relayed_while_the_call_runs_and_cancelling_the_caller_cancels_it_upstream(
    upstreams: Upstreams, transport: str
) -> None:
    """2025 era: notifications/cancelled; 2026 era: the POST is closed. Either stops the tool."""
    started = asyncio.Event()

    async def on_notification(message: JsonObject) -> None:
        if message["method"] == "notifications/progress":
            started.set()

    marker = upstreams.markers / "up-slow-cancelled"
    marker.unlink(missing_ok=True)
    async with upstreams.session(transport) as conn:
        call = asyncio.create_task(call_tool(conn, "slow", {"seconds": 30}, on_notification=on_notification))
        await asyncio.wait_for(started.wait(), 20)
        assert not call.done()  # relayed as it arrived, not once the (30 s) call ended
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert time.monotonic() < deadline, "the upstream never saw the cancellation"
            await asyncio.sleep(0.05)
        # The session still serves after a cancelled call.
        assert text(await call_tool(conn, "echo", {"text": "after"})) == "after"
