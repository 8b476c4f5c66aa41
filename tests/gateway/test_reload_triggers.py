"""What starts a reload: SIGHUP to a real `mcp-gateway serve` process (which stays up, logs it and
applies its command-line overrides again), and the policy file watcher."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway_app.reload_log import ReloadOutcome
from policies.secrets import hash_secret
from tests.conftest import PYTHON, REPO_ROOT, free_port, upstream_stdio
from tests.gateway.reload_support import serve_policy_file, wait_for
from tests.gateway.test_reload import KEY_A, policy

ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
MCP_GATEWAY = Path(PYTHON).parent / "mcp-gateway"


def list_tools(base: str, key: str) -> set[str]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ENVELOPE}}
    headers = {
        "Authorization": f"Bearer {key}",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/list",
        "Accept": "application/json, text/event-stream",
    }
    response = httpx.post(f"{base}/mcp", json=body, headers=headers, timeout=10)
    return {tool["name"] for tool in response.json()["result"]["tools"]}


def served_policy(permission: Any) -> dict[str, Any]:
    """No port and no database in the file: the command line gives them (and must keep giving them)."""
    return {
        "virtual_keys": [{"id": "k", "secret_sha256": hash_secret(KEY_A)}],
        "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"k": permission}},
        "gateway": {"audit": {"fallback_file": "audit-fallback.jsonl"}},
    }


def wait_until(condition: Any, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the gateway ended ({proc.returncode}):\n{log.read_text()}"
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out; log:\n{log.read_text()}")


def test_sighup_reloads_a_running_serve_process(tmp_path: Path) -> None:
    path, log = tmp_path / "gateway.yaml", tmp_path / "gateway.log"
    path.write_text(yaml.safe_dump(served_policy({"alpha": ["echo"]})))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(MCP_GATEWAY), "serve", "--config", str(path), "--port", str(port)]
    command += ["--database-url", f"sqlite:///{tmp_path / 'gateway.db'}"]
    with log.open("wb") as output:
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: list_tools(base, KEY_A) == {"alpha__echo"}, proc, log)

        path.write_text(yaml.safe_dump(served_policy("*")))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "alpha__add" in list_tools(base, KEY_A), proc, log)
        text = log.read_text()
        assert "SIGHUP: reloading the policy file" in text
        assert "policy reload (signal) applied: snapshot 2" in text
        assert "restart" not in text.split("policy reload (signal) applied", 1)[1].splitlines()[0], (
            "--port and --database-url apply again: no restart-only change"
        )

        path.write_text("virtual_keys: [\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "policy reload (signal) refused" in log.read_text(), proc, log)
        assert f"{path}:2: invalid YAML" in log.read_text()
        for count in (2, 3, 4):  # one at a time: the kernel merges a signal sent while one is pending
            proc.send_signal(signal.SIGHUP)
            wait_until(
                lambda n=count: log.read_text().count("policy reload (signal) refused") == n, proc, log
            )
        assert "alpha__add" in list_tools(base, KEY_A), "the policy in force is the last good one"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.anyio
async def test_the_watcher_picks_up_an_edit_and_refuses_a_broken_one_once(tmp_path: Path) -> None:
    watched = policy()
    watched["gateway"] = {"watch_policy_file": True}
    async with serve_policy_file(watched, tmp_path) as gw:

        def outcomes() -> list[tuple[str, str]]:
            return [(r.trigger, r.outcome.value) for r in reversed(gw.reloader.history())]

        edited = policy(team_a=[])
        edited["gateway"] = {"watch_policy_file": True}
        gw.write(edited)
        await wait_for(lambda: outcomes() == [("watch", "applied")])
        assert gw.reloader.history()[0].changes == {"permissions": ["team:a"]}
        assert gw.runtime.state.current.policy.mcp.team_permissions["a"] == []

        gw.write("mcp: {servers: [], team_permissions: {a: [nowhere]}}\n")
        await wait_for(lambda: len(outcomes()) == 2)
        assert outcomes()[1] == ("watch", ReloadOutcome.REFUSED.value)
        await asyncio.sleep(2.5)  # the watcher polls every second: the same broken content is not retried
        assert len(outcomes()) == 2

        # A SIGHUP-style reload of content the watcher has not seen yet is not repeated by the watcher.
        gw.write(watched)
        record = await gw.reload()
        assert record.outcome is ReloadOutcome.APPLIED
        await asyncio.sleep(2.5)
        assert outcomes() == [("watch", "applied"), ("watch", "refused"), ("api", "applied")]
