"""A handshake that fails on the wire is a failed start the supervisor retries, whatever step fails.

Before the one session, an HTTP upstream that took ``initialize`` and then dropped the
connection on ``notifications/initialized`` raised the HTTP client's own error out of
``open``: the supervisor's loop died with it and the server stayed "starting" for good.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from mcp_gateway.upstream.supervisor import Backoff, UpstreamSupervisor
from policies.servers import HttpServerConfig

INITIALIZED = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "flaky", "version": "1"},
}


class DropsInitialized:
    """A raw HTTP/1.1 server: answers ``initialize``, aborts the connection on anything else."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body: Any = orjson.loads(await reader.readexactly(length)) if length else {}
                self.methods.append(body.get("method", head.split(b" ")[0].decode()))
                if body.get("method") != "initialize":
                    writer.transport.abort()
                    return
                answer = orjson.dumps({"jsonrpc": "2.0", "id": body["id"], "result": INITIALIZED})
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: s1\r\n"
                    + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.transport.abort()


@contextlib.asynccontextmanager
async def flaky_upstream() -> AsyncIterator[tuple[str, DropsInitialized]]:
    upstream = DropsInitialized()
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/mcp", upstream


@pytest.mark.anyio
async def test_a_connection_dropped_at_notifications_initialized_is_a_failed_start_that_is_retried() -> None:
    async with flaky_upstream() as (url, upstream):
        config = HttpServerConfig(name="flaky", url=url, protocol="2025-11-25", startup_timeout_seconds=5)
        supervisor = UpstreamSupervisor(config, lambda: None, backoff=Backoff(initial=0.01, maximum=0.01))
        supervisor.start()
        try:
            async with asyncio.timeout(20):
                while supervisor.restarts < 2:  # it failed, and was retried: its loop is alive
                    assert supervisor._task is not None and not supervisor._task.done(), supervisor._task
                    await asyncio.sleep(0.01)
        finally:
            await supervisor.stop()
    assert supervisor.state == "stopped"
    assert (supervisor.last_error or "").startswith("start failed: the HTTP exchange failed")
    assert upstream.methods[:2] == ["initialize", "notifications/initialized"]
