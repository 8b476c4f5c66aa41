"""Replicas starting together on one empty database (SQLite and PostgreSQL): every one comes up and
the migrations run once. Before migrations, two replicas on an empty PostgreSQL database raced their
``CREATE TABLE``s and one died with ``UniqueViolation ... pg_type_typname_nsp_index``."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import orjson
import psycopg
import pytest
import yaml
from sqlalchemy import text

from gateway_app.migrations.lock import ADVISORY_LOCK_KEY
from gateway_app.migrations.runner import VERSION_TABLE, head, pending
from gateway_common.db import make_engine, sqlite_file
from tests.conftest import PYTHON, REPO_ROOT, free_port
from tests.postgres import scratch_database

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    with scratch_database("h9_alembic") as url:
        yield url


@contextlib.contextmanager
def migration_lock_held(url: str) -> Iterator[None]:
    """Hold the lock the start-up upgrade takes, as a migrating replica would."""
    file = sqlite_file(url)
    if file is not None:
        db = sqlite3.connect(file, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            db.rollback()
            db.close()
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        yield


def versions(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()


def test_start_up_upgrades_racing_for_the_lock_migrate_once(database_url: str, tmp_path: Path) -> None:
    logs = [tmp_path / f"upgrade-{n}.log" for n in (1, 2)]
    with migration_lock_held(database_url):
        procs = []
        for log in logs:
            with log.open("wb") as err:
                procs.append(
                    subprocess.Popen(
                        [PYTHON, "-m", "tests.fixtures.upgrade_at_start", database_url],
                        env=ENV,
                        stdout=subprocess.PIPE,
                        stderr=err,
                    )
                )
        # Both are waiting for the lock: released, they race for it.
        deadline = time.monotonic() + 40
        while not all("waiting for it" in log.read_text() for log in logs):
            for proc, log in zip(procs, logs, strict=True):
                assert proc.poll() is None, f"exited before waiting: {log.read_text()}"
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            time.sleep(0.05)
    results = []
    for proc, log in zip(procs, logs, strict=True):
        out, _ = proc.communicate(timeout=40)
        assert proc.returncode == 0, log.read_text()
        results.append(orjson.loads(out))
    assert sorted(r["applied"] for r in results) == [[], list(pending(None))], results
    assert versions(database_url) == [head()]


def test_two_gateways_started_together_on_an_empty_database_both_come_up(
    database_url: str, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    procs, logs = [], []
    for n, port in enumerate(ports):
        config = tmp_path / f"gateway-{n}.yaml"
        config.write_text(yaml.safe_dump({"gateway": {"port": port, "database_url": database_url}}))
        log = tmp_path / f"gateway-{n}.log"
        logs.append(log)
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [PYTHON, "-m", "gateway_app", "serve", "--config", str(config)],
                    cwd=tmp_path,
                    env=ENV,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        deadline = time.monotonic() + 45
        up = [False, False]
        while not all(up):
            for n, port in enumerate(ports):
                assert procs[n].poll() is None, f"gateway {n} died: {logs[n].read_text()}"
                with contextlib.suppress(httpx2.HTTPError):
                    up[n] = (
                        up[n] or httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                    )
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    text_ = [log.read_text() for log in logs]
    migrated = [t.count(f"schema upgraded from empty to {head()}") for t in text_]
    assert sorted(migrated) == [0, 1], text_
    assert not any("Traceback" in t or "UniqueViolation" in t for t in text_), text_
    assert versions(database_url) == [head()]
