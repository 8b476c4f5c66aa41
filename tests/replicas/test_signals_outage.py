"""Redis stopped under two running replicas (a redis-server of the test's own): both keep serving,
/readyz says the bus is reconnecting, and once Redis is back the bus reconnects by itself and a key
revoked afterwards is refused by both within a second."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.redis_support import OwnRedis
from tests.replicas.support import (
    MCP_GATEWAY,
    Cluster,
    Replica,
    bus_state,
    cluster_env,
    initialize,
    policy_doc,
    tool_names,
    wait_ready,
    wait_until,
)
from tests.replicas.test_signals_replicas import answers

pytestmark = pytest.mark.slow


def keys(cluster: Cluster, replica: Replica, *args: str) -> str:
    done = subprocess.run(
        [MCP_GATEWAY, "keys", *args, "--config", str(replica.config)],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_redis_outage_is_survived_and_changes_flow_again_after_it(tmp_path: Path) -> None:
    redis = OwnRedis(tmp_path)
    redis.start()
    cluster = Cluster(tmp_path, cluster_env())
    try:
        doc = policy_doc(f"sqlite:///{tmp_path / 'g.db'}", redis.url, "outage:")
        one, two = cluster.start(doc), cluster.start(doc)
        replicas = [one, two]
        wait_ready(replicas)
        for replica in replicas:
            wait_until(lambda r=replica: bus_state(r) == "connected", replicas, timeout=10)  # type: ignore[misc]
        session = initialize(one.base)

        redis.stop()
        for replica in replicas:
            wait_until(lambda r=replica: bus_state(r) == "reconnecting", replicas, timeout=10)  # type: ignore[misc]
        assert tool_names(two.base, session)  # still serving, sessions too
        secret = json.loads(keys(cluster, one, "create", "dev2", "--team", "eng", "--json"))["secret"]
        for replica in replicas:  # without the bus, the database poll still brings the key
            wait_until(functools.partial(answers, replica, secret, 200), replicas, timeout=5)

        redis.start()
        for replica in replicas:
            wait_until(lambda r=replica: bus_state(r) == "connected", replicas, timeout=10)  # type: ignore[misc]
        keys(cluster, one, "revoke", "dev2")
        revoked_at = time.monotonic()
        for replica in replicas:
            wait_until(functools.partial(answers, replica, secret, 401), replicas, timeout=1.0)
        assert time.monotonic() - revoked_at < 1.0
        for replica in replicas:
            replica.alive()
            assert "change bus: connected to Redis again" in replica.text()
    finally:
        cluster.stop()
        redis.stop()
