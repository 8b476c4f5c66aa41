"""What the real-browser test needs: Debian's chromium (installed by ``make e2e-deps``, never a
browser download of Playwright's own), a real ``mcp-gateway serve`` over a seeded database, and the
CLI's answers to compare the pages with."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway_app.cli import main
from tests.conftest import REPO_ROOT

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium() -> str:
    """The system chromium; a failure under CI=true, a loud skip elsewhere when it is missing."""
    for path in (*CHROMIUM_PATHS, shutil.which("chromium") or ""):
        if path and Path(path).exists():
            return path
    message = (
        "Debian's chromium is not installed (`make e2e-deps` installs it as root: "
        "apt-get install chromium); the dashboard's browser test cannot run"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def artifacts_dir() -> Path:
    """Where screenshots go: $TEST_ARTIFACTS/ui, else tests/ui/artifacts (git-ignored)."""
    base = os.environ.get("TEST_ARTIFACTS")
    path = Path(base) / "ui" if base else REPO_ROOT / "tests" / "ui" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Served:
    base: str
    config: Path
    database_url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def cli(self, *args: str) -> Any:
        """``mcp-gateway ARGS --json`` against the same database (run in this process: the same
        code as the command, without a second of interpreter start per call); its parsed output."""
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        with contextlib.redirect_stdout(out):
            code = main([*args, "--json"])
            out.flush()
        text = out.buffer.getvalue()
        assert code == 0, text
        return orjson.loads(text)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_gateway(config: Path, port: int, database_url: str, log: Path, env: dict[str, str]) -> Served:
    command = [sys.executable, "-m", "gateway_app", "serve", "--config", str(config), "--port", str(port)]
    with log.open("wb") as output:
        proc = subprocess.Popen(
            command,
            cwd=config.parent,
            env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", config, database_url, log, proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the gateway ended ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{served.base}/readyz", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    served.stop()
    raise AssertionError(f"the gateway did not become ready:\n{log.read_text()}")
