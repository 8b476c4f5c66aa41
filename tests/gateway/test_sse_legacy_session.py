"""The upstream session over the HTTP+SSE transport behaves as over stdio (one reader, no relation
between a message and a request but the ids): against the SDK's own SSE server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_gateway.upstream.base import JsonObject, UpstreamConnection
from mcp_gateway.upstream.supervisor import make_connection
from policies.servers import SseServerConfig
from tests.conftest import PYTHON, REPO_ROOT, free_port

pytestmark = pytest.mark.anyio
SSE_UPSTREAM = [PYTHON, "-m", "tests.fixtures.sse_upstream"]


@pytest.fixture(scope="module")
def sse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    port = free_port()
    markers = tmp_path_factory.mktemp("markers")
    with (markers.parent / "sse-upstream.log").open("wb") as log:
        proc = subprocess.Popen(
            [*SSE_UPSTREAM, "--name", "up", "--port", str(port), "--marker-dir", str(markers)],
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
            assert time.monotonic() < deadline, "the SSE upstream did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/sse", markers
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def session(url: str, unrelated: list[JsonObject]) -> AsyncIterator[UpstreamConnection]:
    conn = make_connection(SseServerConfig(name="up", url=url))
    conn.on_notification = unrelated.append
    try:
        await conn.open(30)
        assert not conn.modern
        yield conn
    finally:
        await conn.close()


async def call_tool(conn: UpstreamConnection, name: str, arguments: JsonObject, **options: Any) -> JsonObject:
    reply = await conn.request("tools/call", {"name": name, "arguments": arguments}, timeout=30, **options)
    assert "result" in reply, reply
    result: JsonObject = reply["result"]
    return result


def text(result: JsonObject) -> str:
    return str(result["content"][0]["text"])


@pytest.mark.parametrize("related", [True, False], ids=["on-the-call", "on-the-connection"])
async def test_server_requests_are_answered_through_the_message_endpoint(
    sse_server: tuple[str, Path], related: bool
) -> None:
    async with session(sse_server[0], []) as conn:
        answers = {
            method: text(await call_tool(conn, "ask_client", {"method": method, "related": related}))
            for method in ("ping", "roots/list")
        }
    assert answers == {
        "ping": "answered",
        "roots/list": "error -32601: the gateway relays roots/list only to the client of a call in flight",
    }


async def test_progress_reaches_the_right_one_of_two_concurrent_callers(sse_server: tuple[str, Path]) -> None:
    notes: dict[str, list[tuple[str, str]]] = {"A": [], "B": []}
    unrelated: list[JsonObject] = []

    def relay(label: str) -> Any:
        async def on_notification(message: JsonObject) -> None:
            params = message["params"]
            kind = "progress" if message["method"] == "notifications/progress" else "log"
            notes[label].append((kind, str(params.get("message") or params.get("data"))))

        return on_notification

    async with session(sse_server[0], unrelated) as conn:
        results = await asyncio.gather(
            *(
                call_tool(
                    conn, "chatty", {"label": label, "n": 3, "group": "sse"}, on_notification=relay(label)
                )
                for label in ("A", "B")
            )
        )
    assert [text(r) for r in results] == ["A", "B"]
    for label in ("A", "B"):
        # Progress carries its call's token; a log message carries no relation on this transport
        # (as over stdio), so it goes to the connection's handler, never to a caller.
        assert notes[label] == [("progress", f"{label} {i}") for i in range(3)]
    logs = [m["params"]["data"] for m in unrelated if m["method"] == "notifications/message"]
    assert sorted(logs) == sorted(f"{label} {i}" for label in ("A", "B") for i in range(3))


async def test_progress_is_relayed_while_the_call_runs_and_cancelling_it_stops_it_upstream(
    sse_server: tuple[str, Path],
) -> None:
    url, markers = sse_server
    started = asyncio.Event()

    async def on_notification(message: JsonObject) -> None:
        if message["method"] == "notifications/progress":
            started.set()

    marker = markers / "up-slow-cancelled"
    async with session(url, []) as conn:
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
        assert text(await call_tool(conn, "echo", {"text": "after"})) == "after"
