"""What keeping the daily rollups costs the writers: audit and ledger rows per second through the
real `AuditWriter` and `LedgerWriter` three ways, alternated in one run:

- ``without``: plain inserts, no rollups kept (the schema before revision 0009, as far as writes go);
- ``triggers``: plain inserts with revision 0009's row triggers (how rollups were kept until 0010);
- ``upkeep``: what the writers do now (`gateway_common.rollups.upkeep`: each batch folded into one
  delta per rollup row, in the batch's transaction).

    python benchmarks/writer_rollups.py                     # SQLite and PostgreSQL, 50,000 rows
    python benchmarks/writer_rollups.py --rows 20000 --only sqlite

The writers run off the request path (requests only append to a list), so this is their
throughput, not request latency. Each measurement submits every row, then closes the writer
(which writes what is left); rows per second is rows / that time. Rows: 400 keys, 50 tools, 5
models over 90 days, as benchmarks/reports.py makes them; the database already holds a first
run's rows, so rollup rows are found and updated, not only inserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from psycopg import sql
from reports import MODEL_COLUMNS, TOOL_COLUMNS, model_rows, tool_rows
from sqlalchemy import Connection, Engine, Table, insert, text

from gateway_app.database import upgrade_database
from gateway_common.db import make_engine
from gateway_common.rollups import insert_rows
from gateway_common.writers import rows as store
from llm_proxy.ledger import LedgerWriter
from mcp_gateway.audit import AuditWriter
from policies.gateway_settings import AuditSettings
from policies.providers import LlmProxySettings

REVISION = importlib.import_module("gateway_app.migrations.versions.0009_rollups")


def plain_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    conn.execute(insert(table), list(rows))


def set_triggers(engine: Engine, on: bool) -> None:
    """Create the rollup triggers (``on``) or drop them (PostgreSQL keeps their functions)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for source in ("tool_calls", "model_requests"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS rollup_{source} ON {source}"))
                if on:
                    conn.execute(text(REVISION.postgresql_trigger(source)[1][1]))
        else:
            for rollup in REVISION.ROLLUPS:
                name, create = REVISION.sqlite_trigger(rollup)
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
                if on:
                    conn.execute(text(create))


def audit_rows(count: int, now: datetime, seed: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for values in tool_rows(count, now, seed):
        row = dict(zip(TOOL_COLUMNS, values, strict=True))
        row["timestamp"] = now + timedelta(milliseconds=len(found))
        row.update(arguments={"path": "."}, result={"ok": True}, request_id="1", kind="tool")
        row.update(session_id=None, protocol_version="2025-11-25")
        found.append(row)
    return found


def ledger_rows(count: int, now: datetime, seed: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for values in model_rows(count, now, seed):
        row = dict(zip(MODEL_COLUMNS, values, strict=True))
        row["timestamp"] = (now + timedelta(milliseconds=len(found))).timestamp()
        row.update(price_source=None, ttfb_ms=None, error_type=None, error=None, session_id=None)
        row.update(upstream_request_id=None, user_agent=None)
        found.append(row)
    return found


async def throughput(writer: Any, rows: list[dict[str, Any]]) -> float:
    await writer.start()
    started = time.perf_counter()
    for row in rows:
        writer.submit(row)
        if writer.pending >= writer.batch_size:
            await asyncio.sleep(0)  # let the writer take the batch, as a serving loop would
    await writer.aclose()
    assert writer.written == len(rows), writer.health()
    return len(rows) / (time.perf_counter() - started)


async def measure(engine: Engine, rows: int, tmp: Path, label: str) -> None:
    now = datetime.now(UTC)
    audit = AuditSettings(fallback_file=str(tmp / "audit.jsonl"))
    ledger = LlmProxySettings(ledger_fallback_file=str(tmp / "ledger.jsonl"))
    results: dict[str, list[float]] = {}
    for seed in range(1, 4):  # alternately, so all see the tables grow alike
        for variant, name in enumerate(("without", "triggers", "upkeep")):
            set_triggers(engine, name == "triggers")
            # The writers insert through gateway_common.writers.rows.insert_rows.
            store.insert_rows = insert_rows if name == "upkeep" else plain_insert  # type: ignore[attr-defined]
            audit_rate = await throughput(
                AuditWriter(engine, audit), audit_rows(rows, now, 10 * seed + variant)
            )
            ledger_rate = await throughput(
                LedgerWriter(engine, ledger), ledger_rows(rows, now, 10 * seed + 5 + variant)
            )
            results.setdefault(f"audit {name}", []).append(audit_rate)
            results.setdefault(f"ledger {name}", []).append(ledger_rate)
    for what, rates in results.items():
        print(
            f"  {label:10} {what:22} {statistics.median(rates):9,.0f} rows/s (p50 of {len(rates)})",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000, help="rows per run (three runs each)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="run one database only")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if args.only in (None, "sqlite"):
            engine = make_engine(f"sqlite:///{tmp / 'gateway.db'}")
            upgrade_database(engine)
            asyncio.run(measure(engine, args.rows, tmp, "sqlite"))
            engine.dispose()
        if args.only in (None, "postgresql"):
            database = f"writer_bench_{secrets.token_hex(4)}"
            server = args.postgres.rstrip("/")
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            try:
                engine = make_engine(f"{server}/{database}")
                upgrade_database(engine)
                asyncio.run(measure(engine, args.rows, tmp, "postgresql"))
                engine.dispose()
            finally:
                with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
                    admin.execute(drop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
