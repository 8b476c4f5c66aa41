"""Changes reach every replica (two real `mcp-gateway serve` processes sharing a PostgreSQL database
of the test's own and Redis under a key prefix of its own): a key revoked with `mcp-gateway keys
revoke` is refused by both within a second and its session's GET stream ends; SIGHUP on one reloads
the other, and a replica whose file differs refuses and records it."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import text

from gateway_common.db import make_engine
from tests.postgres import scratch_database
from tests.redis_support import scratch_prefix
from tests.replicas.support import (
    MCP_GATEWAY,
    Cluster,
    Replica,
    cluster_env,
    headers,
    initialize,
    policy_doc,
    tool_names,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.slow


class Pair:
    def __init__(self, cluster: Cluster, doc: dict[str, Any], database_url: str) -> None:
        self.cluster, self.doc, self.database_url = cluster, doc, database_url
        self.one, self.two = cluster.replicas

    def keys(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MCP_GATEWAY, "keys", *args, "--config", str(self.one.config)],
            env=self.cluster.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("signals")
    with scratch_prefix() as (url, prefix), scratch_database("mcpgw_replicas") as database_url:
        cluster = Cluster(tmp, cluster_env())
        doc = policy_doc(database_url, url, prefix)
        try:
            one, two = cluster.start(doc), cluster.start(doc)
            wait_ready([one, two])
            yield Pair(cluster, doc, database_url)
        finally:
            cluster.stop()


def status(replica: Replica, secret: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    hdrs = {**headers(secret), "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
    body["params"] = {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    }
    return httpx.post(f"{replica.base}/mcp", json=body, headers=hdrs, timeout=10).status_code


def answers(replica: Replica, secret: str, code: int) -> bool:
    return status(replica, secret) == code


def test_a_key_revoked_through_one_is_refused_by_both_within_a_second(pair: Pair) -> None:
    created = json.loads(pair.keys("create", "dev1", "--team", "eng", "--json").stdout)
    secret = created["secret"]
    replicas = [pair.one, pair.two]
    for replica in replicas:
        wait_until(functools.partial(answers, replica, secret, 200), replicas, timeout=5)
    session = initialize(pair.two.base, secret)
    ended = threading.Event()

    def hold_stream() -> None:
        hdrs = {**headers(secret, session), "Accept": "text/event-stream"}
        with httpx.stream("GET", f"{pair.two.base}/mcp", headers=hdrs, timeout=30) as response:
            assert response.status_code == 200
            for _ in response.iter_lines():
                pass
        ended.set()

    reader = threading.Thread(target=hold_stream, daemon=True)
    reader.start()
    time.sleep(0.3)  # the stream is open
    pair.keys("revoke", "dev1")
    revoked_at = time.monotonic()
    for replica in replicas:
        wait_until(functools.partial(answers, replica, secret, 401), replicas, timeout=1.0)
    assert time.monotonic() - revoked_at < 1.0
    assert ended.wait(1.0), "the revoked key's GET stream on the other replica did not end"


def reload_rows(database_url: str) -> list[tuple[str, str, list[str]]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT trigger, outcome, errors FROM policy_reloads ORDER BY started_at")
            )
            return [(r[0], r[1], r[2] or []) for r in rows]
    finally:
        engine.dispose()


def test_sighup_on_one_replica_reloads_the_other(pair: Pair) -> None:
    session_one, session_two = initialize(pair.one.base), initialize(pair.two.base)
    assert "alpha__add" in tool_names(pair.two.base, session_two)
    narrowed = {**pair.doc, "mcp": {**pair.doc["mcp"], "virtual_key_permissions": {"k": {"alpha": ["echo"]}}}}
    for replica in (pair.one, pair.two):  # replicas share the file's content, each at its own path
        replica.config.write_text(yaml.safe_dump(narrowed, sort_keys=False))
    pair.one.proc.send_signal(signal.SIGHUP)
    replicas = [pair.one, pair.two]
    wait_until(lambda: tool_names(pair.two.base, session_two) == {"alpha__echo"}, replicas, timeout=5)
    assert tool_names(pair.one.base, session_one) == {"alpha__echo"}
    rows = reload_rows(pair.database_url)
    assert ("signal", "applied") in [(t, o) for t, o, _ in rows]
    assert ("peer", "applied") in [(t, o) for t, o, _ in rows]

    # A replica whose file differs refuses the peer's reload, says why, and keeps its policy.
    wider = {
        **pair.doc,
        "mcp": {**pair.doc["mcp"], "virtual_key_permissions": {"k": {"alpha": ["echo", "add"]}}},
    }
    pair.one.config.write_text(yaml.safe_dump(wider, sort_keys=False))
    pair.one.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: tool_names(pair.one.base, session_one) == {"alpha__echo", "alpha__add"}, replicas, 5)
    wait_until(lambda: "differs from the one replica" in pair.two.text(), replicas, timeout=5)
    assert tool_names(pair.two.base, session_two) == {"alpha__echo"}
    refused = [errors for t, o, errors in reload_rows(pair.database_url) if (t, o) == ("peer", "refused")]
    assert refused and "replicas must share the policy file's content" in refused[-1][0]
    # put both back
    for replica in (pair.one, pair.two):
        replica.config.write_text(yaml.safe_dump(pair.doc, sort_keys=False))
    pair.one.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "alpha__add" in tool_names(pair.two.base, session_two), replicas, timeout=5)


def test_both_replicas_report_the_bus(pair: Pair) -> None:
    for replica in (pair.one, pair.two):
        assert replica.ready()["change_bus"]["state"] == "connected"
    assert isinstance(Path(pair.one.config), Path)
