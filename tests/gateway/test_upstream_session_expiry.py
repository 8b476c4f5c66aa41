"""A 2025 upstream session the server no longer knows (HTTP 404) is gone; a 2026 one has no state.

The call that finds it gets `UpstreamUnreachable` (the server refused it unseen, so a retry is
safe) and the connection closes, so the supervisor opens a new session.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from mcp_gateway.upstream.base import UpstreamUnreachable
from mcp_gateway.upstream.supervisor import make_connection
from policies.servers import HttpServerConfig
from tests.conftest import PYTHON, REPO_ROOT, free_port


class Upstream:
    """The test upstream over HTTP on a fixed port, restartable (a restart forgets its sessions)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tests.fixtures.upstream", "--name", "web", "--http", str(self.port)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                assert time.monotonic() < deadline, "the HTTP upstream did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc = None


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", ["2025-11-25", "2026-07-28"])
async def test_a_restarted_upstream_ends_a_2025_session_and_not_a_2026_one(
    upstream: Upstream, protocol: str
) -> None:
    conn = make_connection(HttpServerConfig(name="web", url=upstream.url, protocol=protocol))
    echo = {"name": "echo", "arguments": {"text": "hi"}}
    try:
        await conn.open(30)
        assert "result" in await conn.request("tools/call", echo, timeout=30)
        upstream.stop()
        upstream.start()
        if protocol == "2025-11-25":
            with pytest.raises(UpstreamUnreachable, match=r"ended our session \(HTTP 404\)"):
                await conn.request("tools/call", echo, timeout=30)
            assert conn.is_closed and conn.closed_reason == "the upstream ended our session (HTTP 404)"
            with pytest.raises(UpstreamUnreachable):  # nothing more is sent on it
                await conn.request("tools/call", echo, timeout=30)
        else:
            assert "result" in await conn.request("tools/call", echo, timeout=30)
            assert not conn.is_closed
    finally:
        await conn.close()
