"""Claude Code itself (pinned releases of both protocol eras) against a running gateway."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import pytest

from tests.conftest import run_gateway, upstream_stdio

NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
RELEASES = {
    "2.1.197 (2025-11-25)": NODE_MODULES / "claude-code-2025" / "bin" / "claude.exe",
    "2.1.332 (2026-07-28)": NODE_MODULES / "claude-code-2026" / "bin" / "claude.exe",
}
KEY = "alice-secret-0123456789"
CONFIG = {
    "virtual_keys": [{"id": "alice", "team": "eng", "secret_env": "TEST_KEY_ALICE"}],
    "teams": [{"name": "eng"}],
    "mcp": {"servers": [upstream_stdio("alpha")], "team_permissions": {"eng": {"alpha": ["echo", "add"]}}},
}


def claude_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }


def run_claude(binary: Path, home: Path, *args: str) -> str:
    project = home / "project"
    project.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(binary), *args],
        cwd=project,
        env=claude_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.fixture(params=sorted(RELEASES), ids=lambda r: r.split()[0])
def claude(request: pytest.FixtureRequest) -> Path:
    binary = RELEASES[request.param]
    if not binary.exists():
        pytest.skip(f"{binary} is missing: run `npm ci` in tests/e2e (make test does)")
    return binary


@pytest.mark.anyio
@pytest.mark.e2e
async def test_claude_mcp_list_connects_with_a_key_and_fails_without(
    claude: Path, tmp_path: Path, keys_env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    async with run_gateway(CONFIG, tmp_path) as gw:
        run_claude(
            claude,
            home,
            "mcp",
            "add",
            "--transport",
            "http",
            "gateway",
            gw.url,
            "--header",
            f"Authorization: Bearer {KEY}",
        )
        run_claude(claude, home, "mcp", "add", "--transport", "http", "nokey", gw.url)
        run_claude(
            claude,
            home,
            "mcp",
            "add",
            "--transport",
            "http",
            "wrongkey",
            gw.url,
            "--header",
            "Authorization: Bearer nope",
        )
        output = await anyio.to_thread.run_sync(run_claude, claude, home, "mcp", "list")
    lines = {line.split(":", 1)[0]: line for line in output.splitlines() if ": http" in line}
    assert "✔ Connected" in lines["gateway"], output
    assert "✘ Failed" in lines["nokey"], output
    assert "✘ Failed" in lines["wrongkey"], output
