"""`serve --workers N`: refused (with the setting named) without Redis counters or a shared session
secret; with both, N worker processes on one port serve tools/call and each other's sessions, and
SIGTERM to the supervisor stops them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.redis_support import scratch_prefix
from tests.replicas.support import (
    MCP_GATEWAY,
    SESSION_SECRET_ENV,
    Cluster,
    cluster_env,
    initialize,
    policy_doc,
    result,
    rpc,
    tool_names,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.slow


def refused(tmp_path: Path, doc: dict[str, object], env: dict[str, str]) -> str:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [MCP_GATEWAY, "serve", "--config", str(config), "--port", "0", "--workers", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    return done.stderr


def test_more_than_one_worker_without_redis_is_refused(tmp_path: Path) -> None:
    doc = policy_doc(f"sqlite:///{tmp_path / 'g.db'}", None, "")
    message = refused(tmp_path, doc, cluster_env())
    assert "serve --workers 2 needs counters.backend: redis" in message
    assert "2 times too high" in message


def test_more_than_one_worker_without_a_shared_session_secret_is_refused(tmp_path: Path) -> None:
    doc = policy_doc(f"sqlite:///{tmp_path / 'g.db'}", "redis://127.0.0.1:1/0", "p:")
    env = {k: v for k, v in cluster_env().items() if k != SESSION_SECRET_ENV}
    message = refused(tmp_path, doc, env)
    assert "needs gateway.session_secret_env" in message and f"${SESSION_SECRET_ENV} is not set" in message


@pytest.fixture
def redis_url() -> Iterator[tuple[str, str]]:
    with scratch_prefix() as found:
        yield found


def test_two_workers_on_one_port_serve_and_share_sessions(tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    cluster = Cluster(tmp_path, cluster_env())
    supervisor = cluster.start(
        policy_doc(f"sqlite:///{tmp_path / 'g.db'}", url, prefix), extra=["--workers", "2"]
    )
    try:
        wait_ready([supervisor])
        wait_until(
            lambda: len(set(re.findall(r"worker \d started \(pid (\d+)\)", supervisor.text()))) == 2,
            [supervisor],
        )
        pids = set(re.findall(r"worker \d started \(pid (\d+)\)", supervisor.text()))
        # New connections each time: the kernel spreads them over both workers' sockets.
        for n in range(12):
            session = initialize(supervisor.base)
            call = rpc(
                supervisor.base,
                session,
                "tools/call",
                {"name": "alpha__echo", "arguments": {"text": f"w{n}"}},
            )
            assert result(call)["content"][0]["text"] == f"w{n}"
        wait_until(lambda: "rebuilt from its signed id" in supervisor.text(), [supervisor], timeout=5)
        assert supervisor.ready()["change_bus"]["state"] == "connected"
        # SIGHUP to the supervisor: one worker reloads, the other follows it through the bus.
        narrowed = policy_doc(f"sqlite:///{tmp_path / 'g.db'}", url, prefix)
        narrowed["mcp"]["virtual_key_permissions"] = {"k": {"alpha": ["echo"]}}
        supervisor.config.write_text(yaml.safe_dump(narrowed, sort_keys=False))
        supervisor.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "policy reload (peer) applied" in supervisor.text(), [supervisor], timeout=10)
        for _ in range(8):  # new connections, spread over both workers
            assert tool_names(supervisor.base, initialize(supervisor.base)) == {"alpha__echo"}
        supervisor.proc.send_signal(signal.SIGTERM)
        assert supervisor.proc.wait(30) == 0, supervisor.text()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid), 0)
        assert supervisor.text().count("Application shutdown complete") == 2
    finally:
        cluster.stop()
