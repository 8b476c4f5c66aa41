"""Fixtures for the example-server tests: anyio on asyncio, and real server subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.examples._support import REPO_ROOT


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} before listening:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"server did not listen on port {port} within {timeout} s:\n{log.read_text()}")


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Yield ``start(module, *args) -> url``: runs a server over streamable HTTP on a free loopback port.

    Every process started is terminated (then killed if need be) and reaped at teardown.
    """
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(module: str, *args: str) -> str:
        port = _free_port()
        log = tmp_path / f"{module}-{port}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    f"examples.servers.{module}",
                    *args,
                    "--transport",
                    "http",
                    "--port",
                    str(port),
                ],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        started.append((proc, log))
        _wait_for_port(port, proc, log)
        return f"http://127.0.0.1:{port}/mcp"

    yield start
    for proc, _log in started:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
