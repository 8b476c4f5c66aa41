"""Two replicas (with Redis and a shared session secret) started at the same moment on an empty
PostgreSQL database: both come up ready, the migrations ran once, and both hear the bus."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from gateway_app.migrations.runner import VERSION_TABLE, head
from gateway_common.db import make_engine
from tests.postgres import scratch_database
from tests.redis_support import scratch_prefix
from tests.replicas.support import Cluster, bus_state, cluster_env, policy_doc, wait_ready, wait_until

pytestmark = pytest.mark.slow


def test_two_replicas_started_together_on_an_empty_database(tmp_path: Path) -> None:
    with scratch_prefix() as (url, prefix), scratch_database("mcpgw_replicas") as database_url:
        cluster = Cluster(tmp_path, cluster_env())
        try:
            doc = policy_doc(database_url, url, prefix)
            one, two = cluster.start(doc), cluster.start(doc)
            wait_ready([one, two])
            for replica in (one, two):
                wait_until(lambda r=replica: bus_state(r) == "connected", [one, two], timeout=10)  # type: ignore[misc]
            engine = make_engine(database_url)
            try:
                with engine.connect() as conn:
                    versions = [
                        row[0] for row in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
                    ]
            finally:
                engine.dispose()
            assert versions == [head()]
            upgraded = [r for r in (one, two) if "schema upgraded from empty" in r.text()]
            waited = [r for r in (one, two) if "another process is upgrading the database schema" in r.text()]
            assert len(upgraded) == 1, [r.text() for r in (one, two)]
            assert len(waited) + len(upgraded) <= 2
        finally:
            cluster.stop()
