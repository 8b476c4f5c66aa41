"""The lifespan's shutdown runs every step even when an earlier one fails: rows in memory reach the
database although stopping the upstreams (or closing the alert webhook client) raised."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from gateway_app.app import create_app
from tests.gateway.test_audit_writer import row
from tests.llm_proxy.conftest import keys_config, settings_for


def count(db: Path, table: str) -> int:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        found = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return found


@pytest.mark.anyio
async def test_a_failing_step_does_not_skip_the_flushes_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(settings_for(keys_config(), tmp_path))
    async with app.router.lifespan_context(app):
        runtime, llm = app.state.runtime, app.state.llm

        async def broken(*_: Any) -> None:
            raise RuntimeError("injected failure")

        runtime.hub.stop = broken  # the first step after closing sessions
        llm.alerts.aclose = broken  # the model proxy's first closing step
        # Long flush intervals: only the shutdown can write these rows.
        runtime.audit.flush_interval = llm.ledger.flush_interval = 3600
        runtime.audit.submit(row(id="audit-row"))
        llm.ledger.submit(
            {
                "request_id": "r" * 32,
                "timestamp": time.time(),
                "endpoint": "messages",
                "key_id": "alice",
                "key_name": "alice",
                "status": "ok",
            }
        )
    db = tmp_path / "gateway.db"
    assert count(db, "tool_calls") == 1 and count(db, "model_requests") == 1
    assert "could not stop the upstream servers" in caplog.text
    assert "could not close the budget alerts" in caplog.text
    assert "model ledger flushed: 1 rows written" in caplog.text  # the rest of the model proxy closed
