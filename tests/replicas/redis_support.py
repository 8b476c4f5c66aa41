"""Redis for the replica tests: the machine's server (a key prefix of the test's own), or a
``redis-server`` the test starts itself on a free port, to stop and start again.

The machine's server is ``MCPGW_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``). Where it
cannot be reached the test is skipped with a loud reason, except with ``CI=true``: CI has the
service, so there a skip would hide a broken set-up, and the test fails instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest

SERVER_URL = os.environ.get("MCPGW_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> NoReturn:
    message = f"Redis NOT TESTED: {reason} (server {SERVER_URL}, set MCPGW_TEST_REDIS)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true, where Redis must be reachable")
    pytest.skip(message)


def _host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    return host or "127.0.0.1", int(port or 6379)


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def machine_redis() -> str:
    """The machine's Redis URL (skips, or fails in CI, when it does not answer)."""
    host, port = _host_port(SERVER_URL)
    if not _answers(host, port):
        unavailable("no answer to PING")
    return SERVER_URL


def unique_prefix() -> str:
    return f"mcpgw_h9rep_{secrets.token_hex(4)}:"


def clear_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A ``redis-server`` of the test's own on a free port (no persistence): stop and start it again."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (needed to cut Redis mid-run)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", self.port, 0.2):
            assert self.proc.poll() is None, "redis-server ended at start"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
