"""SIGPIPE: the server ignores it (a write to a closed pipe or socket is an error handled where it
happens, never the death of the process); output commands piped into ``head`` end quietly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx2
import pytest
import yaml

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from mcp_gateway.audit import AuditWriter
from policies.gateway_settings import AuditSettings
from tests.conftest import PYTHON, REPO_ROOT, free_port
from tests.gateway.test_audit_writer import row

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def ignored_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


def test_serve_ignores_sigpipe(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({"gateway": {"port": port, "database_url": f"sqlite:///{tmp_path / 'g.db'}"}})
    )
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [PYTHON, "-m", "gateway_app", "serve", "--config", str(config)],
        cwd=tmp_path,
        env=ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
            time.sleep(0.1)
        assert ignored_signals(proc.pid) & (1 << (signal.SIGPIPE - 1)), "serve must ignore SIGPIPE"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.anyio
async def test_an_output_command_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    await asyncio.to_thread(create_schema, engine)
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "fb")))
    await writer.start()
    for i in range(5000):  # about 500 KB of output: far more than a pipe holds
        writer.submit(row(request_id=str(i)))
    await writer.aclose()
    engine.dispose()

    command = [PYTHON, "-m", "gateway_app", "audit", "--database-url", url, "--all", "--csv"]
    with subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as audit:
        assert audit.stdout is not None and audit.stderr is not None
        with subprocess.Popen(["head", "-2"], stdin=audit.stdout, stdout=subprocess.PIPE) as head:
            audit.stdout.close()  # head owns the reading end now
            first, _ = head.communicate(timeout=60)
        errors = audit.stderr.read()
        assert audit.wait(timeout=60) == 0
    assert errors == b""
    assert b"fs__read_file" in first
