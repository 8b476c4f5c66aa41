"""Real `mcp-gateway serve` processes sharing a database and Redis, and a small 2025-11-25 client.

Each replica gets its own policy file (the same content unless a test says otherwise), its own
port and log; they share the database URL, the Redis key prefix and the session secret.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from policies.secrets import hash_secret
from tests.conftest import PYTHON, REPO_ROOT, free_port, upstream_stdio

MCP_GATEWAY = str(Path(PYTHON).parent / "mcp-gateway")
KEY = "replica-key-0123456789abcdef"
SESSION_SECRET_ENV = "MCPGW_TEST_SESSION_SECRET"
LEGACY = "2025-11-25"


def policy_doc(database_url: str, redis_url: str | None, prefix: str, **gateway: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "virtual_keys": [{"id": "k", "secret_sha256": hash_secret(KEY)}],
        "teams": [{"name": "eng"}],
        "mcp": {
            "servers": [upstream_stdio("alpha")],
            "virtual_key_permissions": {"k": "*"},
            "team_permissions": {"eng": "*"},
        },
        "gateway": {
            "database_url": database_url,
            "session_secret_env": SESSION_SECRET_ENV,
            "key_refresh_seconds": 30,
            **gateway,
        },
    }
    if redis_url is not None:
        doc["counters"] = {"backend": "redis", "url": redis_url, "key_prefix": prefix}
    return doc


@dataclass
class Replica:
    config: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        assert self.proc.poll() is None, (
            f"replica on {self.port} ended ({self.proc.returncode}):\n{self.text()}"
        )

    def ready(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.base}/readyz", timeout=5).json())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Cluster:
    tmp_path: Path
    env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)

    def start(
        self, doc: dict[str, Any], *, name: str | None = None, extra: list[str] | None = None
    ) -> Replica:
        n = len(self.replicas)
        port = free_port()
        config = self.tmp_path / f"{name or f'replica-{n}'}.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        log = self.tmp_path / f"{name or f'replica-{n}'}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [MCP_GATEWAY, "serve", "--config", str(config), "--port", str(port), *(extra or [])],
                cwd=self.tmp_path,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(config, port, log, proc)
        self.replicas.append(replica)
        return replica

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


def cluster_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), SESSION_SECRET_ENV: secrets.token_hex(32)}


def wait_until(condition: Callable[[], Any], replicas: list[Replica], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for replica in replicas:
            replica.alive()
        try:
            value = condition()
            if value:
                return value
        except (httpx.HTTPError, AssertionError, KeyError) as exc:
            last = exc
        time.sleep(0.02)
    logs = "\n\n".join(f"--- {r.log.name}\n{r.text()[-4000:]}" for r in replicas)
    raise AssertionError(f"timed out ({last!r}); logs:\n{logs}")


def wait_ready(replicas: list[Replica], timeout: float = 40.0) -> None:
    for replica in replicas:
        wait_until(functools.partial(is_ready, replica), replicas, timeout)


def is_ready(replica: Replica) -> bool:
    return bool(replica.ready()["status"] == "ready")


def bus_state(replica: Replica) -> str | None:
    bus = replica.ready().get("change_bus")
    return None if bus is None else str(bus["state"])


# -- a small 2025-11-25 client ---------------------------------------------------------------


def headers(key: str = KEY, session: str | None = None) -> dict[str, str]:
    out = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    if session is not None:
        out["Mcp-Session-Id"] = session
        out["MCP-Protocol-Version"] = LEGACY
    return out


def initialize(base: str, key: str = KEY) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {"roots": {"listChanged": True}},
            "clientInfo": {"name": "replica-test", "version": "1.0"},
        },
    }
    response = httpx.post(f"{base}/mcp", json=body, headers=headers(key), timeout=10)
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert httpx.post(f"{base}/mcp", json=note, headers=headers(key, session), timeout=10).status_code == 202
    return session


def rpc(base: str, session: str, method: str, params: dict[str, Any], key: str = KEY) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": secrets.randbelow(1 << 30), "method": method, "params": params}
    return httpx.post(f"{base}/mcp", json=body, headers=headers(key, session), timeout=10)


def result(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.text)
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        text = data[-1]
    message = orjson.loads(text)
    assert "result" in message, message
    return dict(message["result"])


def tool_names(base: str, session: str) -> set[str]:
    return {tool["name"] for tool in result(rpc(base, session, "tools/list", {}))["tools"]}
