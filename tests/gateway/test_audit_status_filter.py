"""`mcp-gateway audit --status` speaks the outcome vocabulary, in any case, and refuses anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from gateway_app.cli import main
from gateway_app.database import create_schema
from gateway_common.db import make_engine
from mcp_gateway.audit import STATUSES, ToolCall
from policies.outcomes import OUTCOMES


def _row(number: int, name: str, status: str, server: str | None, tool: str | None) -> ToolCall:
    return ToolCall(
        id=f"row{number}",
        timestamp=datetime.now(UTC) - timedelta(seconds=10 - number),
        key_id="alice",
        key_name="alice",
        exposed_name=name,
        server=server,
        tool=tool,
        status=status,
        error=f"error of {name}" if status != "ok" else None,
        latency_ms=1.0,
    )


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    create_schema(engine)
    with Session(engine) as db:
        db.add(_row(1, "alpha__echo", "ok", "alpha", "echo"))
        db.add(_row(2, "alpha__echo", "rate_limited", "alpha", "echo"))
        db.add(_row(3, "alpha__hang", "denied", "alpha", "hang"))
        db.add(_row(4, "alpha__nope", "denied", None, None))
        db.add(_row(5, "alpha__echo", "upstream_unavailable", "alpha", "echo"))
        db.commit()
    engine.dispose()
    return url


def test_the_audit_vocabulary_is_the_outcome_vocabulary() -> None:
    assert STATUSES == OUTCOMES


@pytest.mark.parametrize("spelling", ["rate_limited", "RATE_LIMITED", "Rate-Limited", " rate-limited "])
def test_status_filter_matches_case_insensitively(
    database: str, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    assert main(["audit", "--database-url", database, "--status", spelling]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.startswith("TIME (UTC)")
    assert len(lines) == 1 and "rate_limited" in lines[0] and "alpha__echo" in lines[0]


def test_denied_rows_tell_hidden_from_unknown(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--database-url", database, "--status", "Denied"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 2
    (nope,) = [line for line in lines if "alpha__nope" in line]
    (hang,) = [line for line in lines if "alpha__hang" in line]
    assert " alpha/hang " in hang and " alpha/" not in nope
    assert main(["audit", "--database-url", database, "--summary", "--status", "DENIED"]) == 0
    summary = capsys.readouterr().out.splitlines()[1:]
    assert len(summary) == 2 and all("denied" in line for line in summary)


def test_an_unknown_status_is_refused_with_the_vocabulary(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["audit", "--database-url", database, "--status", "blocked"])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert "unknown status 'blocked'" in error
    assert all(outcome in error for outcome in OUTCOMES)
