"""Redis for tests: the machine's server under a key prefix of the test's own (`scratch_prefix`), or a
``redis-server`` the test starts itself on a free port, to stop and start again (`OwnRedis`).

The machine's server is ``MCPGW_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``). Where it cannot be
reached, or ``redis-server`` is not installed, the test is skipped with a loud reason, except with
``CI=true``: CI has both, so there a skip would hide a broken set-up, and the test fails instead (as
`tests.postgres`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis

from tests.conftest import free_port

SERVER_URL = os.environ.get("MCPGW_TEST_REDIS", "redis://127.0.0.1:6379/0")
PREFIX_ROOT = "mcpgw-test:"


def unavailable(reason: str) -> NoReturn:
    message = f"Redis NOT TESTED: {reason} (server {SERVER_URL}, set MCPGW_TEST_REDIS)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true, where Redis must be reachable")
    pytest.skip(message)


def unique_prefix() -> str:
    """A key (and channel) prefix nobody else uses, so tests sharing one server never meet."""
    return f"{PREFIX_ROOT}{secrets.token_hex(6)}:"


def delete_prefix(url: str, prefix: str) -> None:
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])


@contextlib.contextmanager
def scratch_prefix() -> Iterator[tuple[str, str]]:
    """``(url, prefix)`` on the machine's server; the prefix's keys are deleted afterwards."""
    try:
        with redis.Redis.from_url(SERVER_URL, socket_timeout=2, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        unavailable(f"cannot connect: {exc}")
    prefix = unique_prefix()
    try:
        yield SERVER_URL, prefix
    finally:
        delete_prefix(SERVER_URL, prefix)


class OwnRedis:
    """A ``redis-server`` of the test's own on a free port, without persistence; stop and start at will.

    The port is chosen here, so the URL is known before the server first starts.
    """

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("no redis-server on PATH (needed to stop and restart Redis mid-test)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            command, cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
                    client.ping()
                return
            except redis.RedisError:
                assert self.proc.poll() is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
                time.sleep(0.05)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): its connections stay open and nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def own_redis_server(directory: Path) -> Iterator[OwnRedis]:
    """An `OwnRedis`, started, and stopped afterwards."""
    server = OwnRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
