"""SIGTERM while calls are in flight: the gateway process finishes (or cancels) them and every
started call has its audit row before the process exits."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.conftest import PYTHON, REPO_ROOT, free_port, upstream_stdio

KEY = "shutdown-key-0123456789"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "shutdown-test", "version": "1"},
}


def start_gateway(tmp_path: Path, grace: float) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    db = tmp_path / "gateway.db"
    config = {
        "gateway": {"port": port, "database_url": f"sqlite:///{db}", "shutdown_grace_seconds": grace},
        "virtual_keys": [{"id": "k", "secret_env": "SHUTDOWN_KEY"}],
        "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"k": "*"}},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with (tmp_path / "gateway.log").open("wb") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "gateway_app", "serve", "--config", str(path)],
            cwd=tmp_path,
            env={**os.environ, "SHUTDOWN_KEY": KEY, "PYTHONPATH": str(REPO_ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base, db
        except httpx2.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError((tmp_path / "gateway.log").read_text())


async def call(
    base: str, tool: str, arguments: dict[str, object], request_id: int
) -> httpx2.Response | Exception:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": ENVELOPE},
    }
    headers = {
        "Authorization": f"Bearer {KEY}",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
        "Accept": "application/json, text/event-stream",
    }
    try:
        async with httpx2.AsyncClient(timeout=30) as client:
            return await client.post(f"{base}/mcp", json=body, headers=headers)
    except httpx2.HTTPError as exc:
        return exc


def audit_rows(db: Path) -> list[tuple[str, str, str]]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT request_id, exposed_name, status FROM tool_calls ORDER BY request_id")
        ).all()
    engine.dispose()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


async def run_calls_and_sigterm(
    proc: subprocess.Popen[bytes], base: str, tool: str, arguments: dict[str, object], n: int
) -> list[httpx2.Response | Exception]:
    results: list[httpx2.Response | Exception] = []

    async def one(i: int) -> None:
        results.append(await call(base, tool, arguments, i))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
        await anyio.sleep(0.6)  # all calls are inside the upstream by now
        proc.send_signal(signal.SIGTERM)
    return results


@pytest.mark.anyio
async def test_sigterm_finishes_calls_in_flight_and_audits_them(tmp_path: Path) -> None:
    proc, base, db = start_gateway(tmp_path, grace=30)
    try:
        results = await run_calls_and_sigterm(proc, base, "alpha__slow", {"seconds": 1.5}, 6)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    for result in results:
        assert isinstance(result, httpx2.Response), result
        assert "slept 1.5" in result.text
    assert audit_rows(db) == [(str(i), "alpha__slow", "ok") for i in range(6)]
    log = (tmp_path / "gateway.log").read_text()
    assert "audit log flushed: 6 records written" in log


@pytest.mark.anyio
async def test_sigterm_past_the_grace_period_cancels_and_still_audits(tmp_path: Path) -> None:
    proc, base, db = start_gateway(tmp_path, grace=1)
    try:
        await run_calls_and_sigterm(proc, base, "alpha__hang", {}, 4)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert audit_rows(db) == [(str(i), "alpha__hang", "cancelled") for i in range(4)]


def test_ctrl_c_stops_cleanly_with_no_traceback(tmp_path: Path) -> None:
    """SIGINT (what Ctrl-C in `make run` sends) is a graceful stop: everything flushed, and the
    process ends by SIGINT as the shell expects (uvicorn raises it again once it has stopped), with
    no traceback for it."""
    proc, _, _ = start_gateway(tmp_path, grace=5)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == -signal.SIGINT
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "gateway.log").read_text()
    assert "audit log flushed" in log and "Application shutdown complete" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
