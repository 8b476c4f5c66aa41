"""The test upstream with its client-side tools, over stdio or as a streamable-HTTP process."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import PYTHON, REPO_ROOT, free_port, upstream_stdio

KEY = "alice-secret-0123456789"
BOB = "bob-secret-0123456789"


@contextlib.contextmanager
def http_upstream(name: str, log: Path, marker_dir: Path | None = None) -> Iterator[str]:
    """A streamable-HTTP test upstream process with ``--client-side``; yields its URL."""
    port = free_port()
    args = [PYTHON, "-m", "tests.fixtures.upstream", "--name", name, "--http", str(port), "--client-side"]
    if marker_dir is not None:
        args += ["--marker-dir", str(marker_dir)]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stdio_entry(name: str, marker_dir: Path | None = None, **extra: Any) -> dict[str, Any]:
    server = upstream_stdio(name, marker_dir=marker_dir, **extra)
    server["args"].append("--client-side")
    return server


def policy(*servers: dict[str, Any], **mcp: Any) -> dict[str, Any]:
    return {
        "virtual_keys": [
            {"id": "alice", "secret_env": "TEST_KEY_ALICE"},
            {"id": "bob", "secret_env": "TEST_KEY_BOB"},
        ],
        "mcp": {"servers": list(servers), "virtual_key_permissions": {"alice": "*", "bob": "*"}, **mcp},
    }


@contextlib.contextmanager
def upstream_entry(kind: str, tmp_path: Path, marker_dir: Path | None = None) -> Iterator[dict[str, Any]]:
    """``stdio`` (2025-11-25 always), ``http-2025`` or ``http-2026``: a server entry named ``up``."""
    if kind == "stdio":
        yield stdio_entry("up", marker_dir)
        return
    with http_upstream("up", tmp_path / "upstream.log", marker_dir) as url:
        yield {
            "name": "up",
            "url": url,
            "protocol": kind.removeprefix("http-")
            .replace("2025", "2025-11-25")
            .replace("2026", "2026-07-28"),
        }
