"""tool_calls.kind: rows from before the column (a fallback file an earlier release wrote) are
replayed as tool rows, mixed with rows that say their kind."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlmodel import Session, select

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from mcp_gateway.audit import AuditWriter, ToolCall
from policies.gateway_settings import AuditSettings
from tests.gateway.test_audit_writer import row


@pytest.mark.anyio
async def test_fallback_rows_without_a_kind_are_replayed_as_tool_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    create_schema(engine)
    fallback = tmp_path / "fallback.jsonl"
    lines = [
        row(request_id="old-1"),  # written before the column existed: no "kind"
        {**row(request_id="new-1", exposed_name="mcpgw://fs/file:///a"), "kind": "resource"},
        row(request_id="old-2"),
    ]
    fallback.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(fallback)))
    await writer.start()
    await writer.aclose()
    with Session(engine) as db:
        stored = {r.request_id: r.kind for r in db.exec(select(ToolCall)).all()}
    assert stored == {"old-1": "tool", "new-1": "resource", "old-2": "tool"}
    assert not fallback.exists()
    engine.dispose()
