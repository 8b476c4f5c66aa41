"""The rollups always hold what the rows hold: rows written by the real writers, a batch that fails
halfway, the fallback file's replay, rows from before revision 0009 (its backfill), rows from the
triggers' time before revision 0010, and a rebuild after a bulk import. And retention deletes rows
but keeps the rollups (gateway_common/rollups says why). The reference is revision 0009's own SQL
aggregation over the rows, independent of the Python folding that keeps them now."""

from __future__ import annotations

import importlib
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, inspect, text

from gateway_app.cli import main
from gateway_app.database import create_schema
from gateway_app.migrations import runner
from gateway_app.retention import TABLES, prune_table
from gateway_common.db import make_engine
from gateway_common.rollups import ROLLUP_MODELS, insert_rows, rebuild_rollups
from gateway_common.rollups.folding import ROLLUPS
from gateway_common.writers.fallback import FallbackFile
from llm_proxy.ledger import LedgerWriter, ModelRequest
from mcp_gateway.audit import AuditWriter, ToolCall
from policies.gateway_settings import AuditSettings
from policies.providers import LlmProxySettings
from tests.reports import rollup_data as ref

REVISION = importlib.import_module("gateway_app.migrations.versions.0009_rollups")
TOOL_CALLS = ToolCall.__table__  # type: ignore[attr-defined]
MODEL_REQUESTS = ModelRequest.__table__  # type: ignore[attr-defined]


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal) else value


def rollup_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup table's rows (without their ids), in a stable order."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for rollup in REVISION.ROLLUPS:
            columns = REVISION._columns(rollup)
            rows = conn.execute(text(f"SELECT {columns} FROM {rollup.table}"))
            found[rollup.table] = sorted((tuple(map(_plain, row)) for row in rows), key=repr)
    return found


def recomputed(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The rollups as revision 0008's backfill computes them from the rows."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for rollup in REVISION.ROLLUPS:
            select = REVISION.aggregate_select(rollup, engine.dialect.name, rollup.source)
            rows = [tuple(map(_plain, row)) for row in conn.execute(text(select))]
            found[rollup.table] = sorted(found.get(rollup.table, []) + rows, key=repr)
    return found


TOOL_ROLLUPS = ("tool_calls_daily", "tool_usage_daily", "tool_keys_monthly", "refusals_daily")


def same(kept: dict[str, list[tuple[Any, ...]]], expected: dict[str, list[tuple[Any, ...]]]) -> bool:
    """Equal, but sums of costs only to within float rounding (added batch by batch, not row by row)."""
    if kept.keys() != expected.keys():
        return False
    for table, rows in kept.items():
        if len(rows) != len(expected[table]):
            return False
        for row, other in zip(rows, expected[table], strict=True):
            for value, want in zip(row, other, strict=True):
                if isinstance(value, float) and isinstance(want, float):
                    if not math.isclose(value, want, rel_tol=1e-12, abs_tol=1e-12):
                        return False
                elif value != want:
                    return False
    return True


def assert_consistent(engine: Engine, filled: tuple[str, ...] = ()) -> None:
    """Each rollup as the rows make it; those named in ``filled`` (default: all) have rows."""
    kept, expected = rollup_rows(engine), recomputed(engine)
    differ = {
        table: (
            sorted(set(rows) - set(expected[table]), key=repr)[:3],
            sorted(set(expected[table]) - set(rows), key=repr)[:3],
        )
        for table, rows in kept.items()
        if not same({table: rows}, {table: expected[table]})
    }
    assert not differ, differ
    assert all(kept[table] for table in filled or kept), "rollups with rows to compare"


def tool_rows(count: int, seed: int = 3) -> list[dict[str, Any]]:
    rows = ref.tool_rows(random.Random(seed), count, set())
    for row in rows:  # as the request path hands them to the writer
        row.update(request_id=None, client_version="1", session_id=None, protocol_version=None)
        row.update(arguments={"a": 1}, arguments_truncated=False, result=None, result_truncated=False)
        row.update(error=None, upstream_latency_ms=None)
    return rows


def model_rows(count: int, seed: int = 4) -> list[dict[str, Any]]:
    rows = ref.model_rows(random.Random(seed), count, set())
    for row in rows:
        row["timestamp"] = row["timestamp"].timestamp()  # epoch seconds, as the request path has it
        row.update(route=None, attempts=1, usage_estimated=None, price_source=None, latency_ms=1.0)
        row.update(ttfb_ms=None, stream=False, error_type=None, error=None, session_id=None)
        row.update(upstream_request_id=None, user_agent=None)
    return rows


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.mark.anyio
async def test_rows_written_by_the_writers_are_in_the_rollups(engine: Engine, tmp_path: Path) -> None:
    create_schema(engine)
    audit = AuditWriter(engine, AuditSettings(batch_size=64, fallback_file=str(tmp_path / "audit.jsonl")))
    ledger = LedgerWriter(
        engine, LlmProxySettings(ledger_batch_size=64, ledger_fallback_file=str(tmp_path / "l.jsonl"))
    )
    await audit.start()
    await ledger.start()
    for call in tool_rows(300):
        audit.submit(call)  # type: ignore[arg-type]
    for request in model_rows(300):
        ledger.submit(request)  # type: ignore[arg-type]
    await audit.aclose()
    await ledger.aclose()
    assert (audit.written, ledger.written) == (300, 300)
    assert_consistent(engine)


@pytest.mark.anyio
async def test_a_batch_refused_halfway_leaves_the_rollups_with_the_rows(
    engine: Engine, tmp_path: Path
) -> None:
    """A duplicate id fails the batch's statement: nothing of it stays (rows nor rollups); the
    writer then stores the others one by one, each with its rollups."""
    create_schema(engine)
    rows = tool_rows(40)
    with engine.begin() as conn:
        insert_rows(conn, TOOL_CALLS, rows[:5])
    before = rollup_rows(engine)

    def crash() -> None:
        with engine.begin() as conn:  # killed after the insert, before the commit
            insert_rows(conn, TOOL_CALLS, rows[5:20])
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        crash()
    assert rollup_rows(engine) == before
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "audit.jsonl")))
    await writer.start()
    for call in rows[3:]:  # 3 and 4 are in already
        writer.submit(call)  # type: ignore[arg-type]
    await writer.aclose()
    assert (writer.written, writer.refused) == (35, 2)
    assert_consistent(engine, TOOL_ROLLUPS)


@pytest.mark.anyio
async def test_the_fallback_files_replay_adds_to_the_rollups(engine: Engine, tmp_path: Path) -> None:
    create_schema(engine)
    calls, requests = tool_rows(50), model_rows(50)
    with engine.begin() as conn:  # some went in before the database went away
        insert_rows(conn, TOOL_CALLS, calls[:10])
    # What the writers wrote to their files while the database was away, replayed at the next start
    # (the first ten calls twice: written, then kept in the file by a retried batch).
    FallbackFile(tmp_path / "audit.jsonl", TOOL_CALLS).append(calls)
    prepared = [dict(row, timestamp=datetime.fromtimestamp(row["timestamp"], UTC)) for row in requests]
    FallbackFile(tmp_path / "ledger.jsonl", MODEL_REQUESTS).append(prepared)
    audit = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "audit.jsonl")))
    ledger = LedgerWriter(engine, LlmProxySettings(ledger_fallback_file=str(tmp_path / "ledger.jsonl")))
    await audit.start()
    await ledger.start()
    await audit.aclose()
    await ledger.aclose()
    assert not (tmp_path / "audit.jsonl").exists() and not (tmp_path / "ledger.jsonl").exists()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tool_calls")).scalar_one() == 50
    assert_consistent(engine)


def test_the_upgrades_fill_the_rollups_from_the_rows_already_there(engine: Engine) -> None:
    """Rows from before 0009 (its backfill), rows its triggers counted, then the writers' own upkeep."""
    with engine.connect() as conn, conn.begin():
        command.upgrade(runner.alembic_config(conn), "0008")
    assert not inspect(engine).has_table("usage_daily")
    with engine.begin() as conn:
        conn.execute(TOOL_CALLS.insert(), tool_rows(200))
        conn.execute(MODEL_REQUESTS.insert(), ref.model_rows(random.Random(5), 200, set()))
    with engine.connect() as conn, conn.begin():
        command.upgrade(runner.alembic_config(conn), "0009")
    assert_consistent(engine)
    with engine.begin() as conn:  # counted by 0009's triggers
        conn.execute(TOOL_CALLS.insert(), tool_rows(100, seed=9))
    assert_consistent(engine)
    create_schema(engine)  # to the head: 0010 drops the triggers
    with engine.begin() as conn:
        insert_rows(conn, TOOL_CALLS, tool_rows(100, seed=10))
        insert_rows(conn, MODEL_REQUESTS, ref.model_rows(random.Random(6), 100, set()))
    assert_consistent(engine)


def test_no_rollup_trigger_is_left_at_the_head(engine: Engine) -> None:
    """Revision 0010 drops 0009's triggers: with them, every row would be counted twice."""
    create_schema(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = "SELECT DISTINCT trigger_name FROM information_schema.triggers"
        assert [row[0] for row in conn.execute(text(query))] == []
    assert {model.__tablename__ for model in ROLLUP_MODELS} == {r.table for r in REVISION.ROLLUPS}
    assert {(r.table.name, r.source) for r in ROLLUPS} == {(r.table, r.source) for r in REVISION.ROLLUPS}


def test_the_downgrade_to_0009_brings_the_triggers_back(engine: Engine) -> None:
    create_schema(engine)
    with engine.connect() as conn, conn.begin():
        command.downgrade(runner.alembic_config(conn), "0009")
    with engine.begin() as conn:
        conn.execute(TOOL_CALLS.insert(), tool_rows(50))
    assert_consistent(engine, ("tool_calls_daily",))


def test_a_rebuild_counts_rows_put_in_some_other_way(engine: Engine) -> None:
    create_schema(engine)
    with engine.begin() as conn:
        insert_rows(conn, TOOL_CALLS, tool_rows(120))
        conn.execute(TOOL_CALLS.insert(), tool_rows(80, seed=11))  # a bulk import: no rollups
        conn.execute(MODEL_REQUESTS.insert(), ref.model_rows(random.Random(7), 90, set()))
    assert not same(rollup_rows(engine), recomputed(engine))
    with engine.begin() as conn:
        counted = rebuild_rollups(conn, {"tool_calls": TOOL_CALLS, "model_requests": MODEL_REQUESTS})
    assert counted == {"tool_calls": 200, "model_requests": 90}
    assert_consistent(engine)


def test_retention_deletes_rows_and_keeps_their_rollups(engine: Engine) -> None:
    create_schema(engine)
    with engine.begin() as conn:
        insert_rows(conn, TOOL_CALLS, tool_rows(200))
    before = rollup_rows(engine)
    cutoff = ref.START + timedelta(days=3)
    deleted = prune_table(engine, TABLES["tool_calls"], cutoff)
    assert deleted > 0
    assert rollup_rows(engine) == before
    assert rollup_rows(engine) != recomputed(engine)


def test_db_rebuild_rollups_counts_a_bulk_import(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    create_schema(engine)
    with engine.begin() as conn:  # a bulk import by hand
        conn.execute(TOOL_CALLS.insert(), tool_rows(70))
        conn.execute(MODEL_REQUESTS.insert(), ref.model_rows(random.Random(8), 30, set()))
    url = engine.url.render_as_string(hide_password=False)
    assert main(["db", "rebuild-rollups", "--database-url", url]) == 0
    assert capsys.readouterr().out.endswith("rollups rebuilt from 70 tool calls and 30 model requests\n")
    assert_consistent(engine)


def test_each_engine_inserts_with_its_own_json_encoder(tmp_path: Path) -> None:
    """SQLite inserts are prepared once per engine: another engine's JSON encoder is never borrowed."""
    first = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(first)
    second = create_engine(
        f"sqlite:///{tmp_path / 'b.db'}", json_serializer=lambda value: '{"encoded": "here"}'
    )
    create_schema(second)
    for engine in (first, second):
        with engine.begin() as conn:
            insert_rows(conn, TOOL_CALLS, tool_rows(3))
    with first.connect() as conn:
        assert conn.execute(text("SELECT arguments FROM tool_calls")).scalars().all() == ['{"a":1}'] * 3
    with second.connect() as conn:
        assert (
            conn.execute(text("SELECT arguments FROM tool_calls")).scalars().all()
            == ['{"encoded": "here"}'] * 3
        )
    first.dispose()
    second.dispose()
