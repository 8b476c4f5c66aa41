"""Every report and listing of `gateway_app.queries` on 1,000,000 tool calls and 1,000,000 model
requests, in SQLite and in PostgreSQL; each should answer within 1 s.

    python benchmarks/reports.py                  # both databases, 1,000,000 rows each
    python benchmarks/reports.py --rows 200000 --only sqlite

The rows are realistic in shape: 400 keys in 10 teams (a few keys far busier than most), 50 tools
on 8 servers, 5 models on 3 providers, 90 days up to now, about 3 % refusals by rate limits and
budgets. SQLite is a file in a temporary directory; PostgreSQL a scratch database of its own
(``--postgres``, default the test server; ``--database`` names it), created and dropped here. Rows
go in with executemany (SQLite) and COPY (PostgreSQL) after the schema's migrations ran, then
`rebuild_rollups` counts them into the daily rollups (as ``mcp-gateway db rebuild-rollups`` does
after a bulk import); the seeding time includes that.
``--keep PATH`` keeps a seeded SQLite file; given an older one, the upgrade (and its rollup
backfill) is timed. Each query runs ``--rounds`` times; the table shows the first (cold) run, the
median (p50) and the best, and the p50 of this process's CPU time (all of SQLite's work, none of
PostgreSQL's: on a busy machine the wall times wait for a core).

The dashboard asks the same functions about today and this month: those are here too
(``dashboard:``), with "this month" as of the last moment of the previous month, the longest one.
"""

from __future__ import annotations

import argparse
import functools
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text

from gateway_app.database import rebuild_rollups, upgrade_database
from gateway_app.queries import (
    ModelRequestFilter,
    Period,
    ToolCallFilter,
    budget_status,
    count_tool_calls,
    get_model_request,
    get_tool_call,
    limits,
    list_model_requests,
    list_tool_calls,
    parse_period,
    spend,
    team_tools,
    top_keys,
)
from gateway_common.db import make_engine
from gateway_common.rollups import ROLLUP_MODELS
from policies import load_policy_text
from policies.budgeting import BudgetScopes
from policies.outcomes import Outcome

DAYS = 90
TEAMS = [f"team{n:02d}" for n in range(10)]
KEYS = [(f"vk_dev_{n:03d}", TEAMS[n % len(TEAMS)]) for n in range(400)]
SERVERS = {f"server{s}": [f"tool_{s}_{t}" for t in range(6 + s % 2)] for s in range(8)}
TOOLS = [(server, tool) for server, tools in SERVERS.items() for tool in tools][:50]
MODELS = [
    ("claude-sonnet-4-5", "anthropic", 0.02),
    ("claude-haiku-4-5", "anthropic", 0.004),
    ("claude-opus-4-1", "anthropic", 0.09),
    ("fast", "backup", 0.003),
    ("gpt-4o", "openai", 0.015),
]
TOOL_STATUSES = [("ok", 920), ("tool_error", 30), ("denied", 15), ("rate_limited", 25), ("timeout", 5),
                 ("upstream_error", 5)]  # fmt: skip
MODEL_STATUSES = [("ok", 930), ("rate_limited", 20), ("budget_exceeded", 10), ("denied", 10),
                  ("upstream_error", 15), ("cancelled", 15)]  # fmt: skip
CLIENTS = [("claude-code", 80), ("cursor-vscode", 15), ("mcp-inspector", 5)]
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _weights(pairs: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    return [name for name, _ in pairs], [weight for _, weight in pairs]


def _key_weights(rng: random.Random) -> list[float]:
    """A few busy developers, many occasional ones (Zipf-like)."""
    order = list(range(len(KEYS)))
    rng.shuffle(order)
    return [1.0 / (1 + rank) ** 0.8 for rank in order]


def _stamps(rng: random.Random, count: int, now: datetime) -> list[datetime]:
    span = DAYS * 86_400
    return [now - timedelta(seconds=rng.random() * span) for _ in range(count)]


def tool_rows(count: int, now: datetime, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    weights = _key_weights(rng)
    keys = rng.choices(KEYS, weights, k=count)
    statuses = rng.choices(*_weights(TOOL_STATUSES), k=count)
    clients = rng.choices(*_weights(CLIENTS), k=count)
    tools = rng.choices(TOOLS, [1 / (1 + i) for i in range(len(TOOLS))], k=count)
    for n, stamp in enumerate(_stamps(rng, count, now)):
        (key_id, team), status, (server, tool) = keys[n], statuses[n], tools[n]
        blocked = f"rate_limit:key:{key_id}:tool_calls_per_minute" if status == "rate_limited" else None
        error = None if status == "ok" else f"{status} error"
        arguments, result = '{"path": "."}', '{"ok": true}'
        who = (secrets.token_hex(16), stamp, key_id, key_id, team, clients[n], "2.1", f"{server}__{tool}")
        yield (*who, server, tool, arguments, False, result, False, status, error, blocked, 3.5, 2.0)


TOOL_COLUMNS = [
    "id",
    "timestamp",
    "key_id",
    "key_name",
    "team",
    "client_name",
    "client_version",
    "exposed_name",
    "server",
    "tool",
    "arguments",
    "arguments_truncated",
    "result",
    "result_truncated",
    "status",
    "error",
    "blocked_by",
    "latency_ms",
    "upstream_latency_ms",
]


def model_rows(count: int, now: datetime, seed: int = 2) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    weights = _key_weights(rng)
    keys = rng.choices(KEYS, weights, k=count)
    statuses = rng.choices(*_weights(MODEL_STATUSES), k=count)
    models = rng.choices(MODELS, [50, 30, 8, 7, 5], k=count)
    for n, stamp in enumerate(_stamps(rng, count, now)):
        (key_id, team), status, (model, provider, price) = keys[n], statuses[n], models[n]
        answered = status in ("ok", "cancelled", "upstream_error")
        inp, out = rng.randint(200, 20_000), rng.randint(50, 4_000)
        cost = round(price * (inp + 4 * out) / 10_000, 6) if answered else 0.0
        blocked = {
            "rate_limited": f"rate_limit:key:{key_id}:requests_per_minute",
            "budget_exceeded": f"budget:team:{team}:monthly",
        }.get(status)
        if not answered:
            inp, out = 0, 0
        answering = provider if answered else None
        who = (secrets.token_hex(16), stamp, "messages", key_id, key_id, team, answering, model)
        served, estimated = (model, False) if answered else (None, None)
        usage = (served, "claude-*", 1, inp, out, 0, 0, estimated, cost, status)
        yield (*who, *usage, 200 if status == "ok" else 429, blocked, 900.0, True)


MODEL_COLUMNS = [
    "request_id",
    "timestamp",
    "endpoint",
    "key_id",
    "key_name",
    "team",
    "provider",
    "requested_model",
    "served_model",
    "route",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "usage_estimated",
    "cost_usd",
    "status",
    "http_status",
    "blocked_by",
    "latency_ms",
    "stream",
]


def _batches(rows: Iterator[tuple[Any, ...]], size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def seed_sqlite(engine: Engine, count: int, now: datetime) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, columns, rows, stamp_at in (
            ("tool_calls", TOOL_COLUMNS, tool_rows(count, now), 1),
            ("model_requests", MODEL_COLUMNS, model_rows(count, now), 1),
        ):
            marks = ", ".join("?" for _ in columns)
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            for batch in _batches(rows):
                cursor.executemany(
                    insert,
                    [(*r[:stamp_at], r[stamp_at].strftime(SQLITE_FORMAT), *r[stamp_at + 1 :]) for r in batch],
                )
                raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def seed_postgres(url: str, count: int, now: datetime) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        for table, columns, rows in (
            ("tool_calls", TOOL_COLUMNS, tool_rows(count, now)),
            ("model_requests", MODEL_COLUMNS, model_rows(count, now)),
        ):
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        conn.commit()
        conn.execute("ANALYZE")


POLICY = """
providers: [{name: anthropic, kind: anthropic, base_url: "http://127.0.0.1:9"}]
teams: [{name: team00}, {name: team01}]
virtual_keys: [{id: vk_dev_000, team: team00}, {id: vk_dev_001, team: team01}]
budgets:
  org: {monthly_limit_usd: 100000, daily_limit_usd: 5000}
  teams:
    - {name: team00, monthly_limit_usd: 10000, weekly_limit_usd: 3000}
    - {name: team01, monthly_limit_usd: 10000}
  keys:
    - {id: vk_dev_000, daily_limit_usd: 100, weekly_limit_usd: 400}
  providers:
    - {name: anthropic, monthly_limit_usd: 80000}
"""


def _tool_calls(filters: ToolCallFilter, db: Engine) -> Any:
    return list_tool_calls(db, filters)


def _model_requests(filters: ModelRequestFilter, db: Engine) -> Any:
    return list_model_requests(db, filters)


def questions(now: datetime, some_tool: str, some_request: str) -> list[tuple[str, Callable[[Any], Any]]]:
    def period(**options: str) -> Period:
        return parse_period(now=now, **options)

    days30, week, last_month = period(since="30d"), period(week="this"), period(month="last")
    today = Period(now.replace(hour=0, minute=0, second=0, microsecond=0), None, "today")
    assert last_month.start is not None and last_month.end is not None
    month_end = last_month.end - timedelta(microseconds=1)
    refused = tuple(
        Outcome(status) for status in ("denied", "invalid_request", "rate_limited", "budget_exceeded")
    )
    days90 = period(since=f"{DAYS}d")
    scopes = BudgetScopes(load_policy_text(POLICY).policy)
    team, key = "team03", "vk_dev_017"
    tools, requests = ToolCallFilter, ModelRequestFilter
    limited, over_budget = (Outcome.RATE_LIMITED,), (Outcome.BUDGET_EXCEEDED,)
    calls: list[tuple[str, ToolCallFilter]] = [
        ("", tools()),
        (" --key", tools(key=key)),
        (" --team", tools(team=team)),
        (" --server --tool", tools(server="server3", tool="tool_3_2")),
        (" --tool (alone)", tools(tool="tool_7_6")),
        (" --status rate_limited", tools(statuses=limited)),
        (" --status budget_exceeded (none)", tools(statuses=over_budget)),
        (" --client mcp-inspector", tools(client="mcp-inspector")),
        (" --since 2d --until 1d", tools(period=period(since="2d", until="1d"))),
        (
            " --team --status --since 7d",
            tools(team=team, statuses=(Outcome.DENIED,), period=period(since="7d")),
        ),
    ]
    models: list[tuple[str, ModelRequestFilter]] = [
        ("", requests()),
        (" --key", requests(key=key)),
        (" --team", requests(team=team)),
        (" --model claude-opus-4-1", requests(model="claude-opus-4-1")),
        (" --provider openai", requests(provider="openai")),
        (" --status budget_exceeded", requests(statuses=over_budget)),
        (" --status timeout (none)", requests(statuses=(Outcome.TIMEOUT,))),
    ]
    found: list[tuple[str, Callable[[Any], Any]]] = []
    for flags, call_filter in calls:
        found.append((f"audit{flags}", functools.partial(_tool_calls, call_filter)))
    found += [
        ("audit: page 2 (cursor)", lambda db: list_tool_calls(db, cursor=list_tool_calls(db).next_cursor)),
        ("audit show ID", lambda db: get_tool_call(db, some_tool)),
    ]
    for flags, request_filter in models:
        found.append((f"audit requests{flags}", functools.partial(_model_requests, request_filter)))
    found += [
        ("audit show REQUEST-ID", lambda db: get_model_request(db, some_request)),
        ("report top-keys --week", lambda db: top_keys(db, week)),
        ("report top-keys (30 days)", lambda db: top_keys(db, days30)),
        ("report top-keys --month last --by cost", lambda db: top_keys(db, last_month, order="cost")),
        (
            "report tools --team --client claude-code",
            lambda db: team_tools(db, days30, team=team, client="claude-code"),
        ),
        ("report tools (30 days)", lambda db: team_tools(db, days30)),
        ("report spend --month last", lambda db: spend(db, last_month)),
        ("report spend --month last --by key", lambda db: spend(db, last_month, by="key")),
        (
            "report spend --month last --by model --daily",
            lambda db: spend(db, last_month, by="model", daily=True),
        ),
        (
            "report spend --month last --by provider --daily",
            lambda db: spend(db, last_month, by="provider", daily=True),
        ),
        (
            "report spend --month last --team --by key --daily",
            lambda db: spend(db, last_month, by="key", team=team, daily=True),
        ),
        ("report limits (30 days)", lambda db: limits(db, days30)),
        ("report budgets", lambda db: budget_status(db, scopes, now=now)),
        # The whole table (90 days, every row):
        ("report top-keys --since 90d", lambda db: top_keys(db, days90)),
        ("report tools --since 90d", lambda db: team_tools(db, days90)),
        ("report spend --since 90d --daily", lambda db: spend(db, days90, daily=True)),
        ("report limits --by team --since 90d", lambda db: limits(db, days90, by="team")),
        # The dashboard's pages (the same functions):
        ("dashboard: budgets, month's last moment", lambda db: budget_status(db, scopes, now=month_end)),
        ("dashboard: model requests today", lambda db: spend(db, today, by="key")),
        ("dashboard: tool calls today", lambda db: top_keys(db, today, order="tool_calls", limit=None)),
        (
            "dashboard: refusals today",
            lambda db: count_tool_calls(db, ToolCallFilter(statuses=refused, period=today)),
        ),
        ("dashboard: limits today", lambda db: limits(db, today)),
        ("dashboard: spend month by team daily", lambda db: spend(db, last_month, by="team", daily=True)),
        ("dashboard: spend 90d by provider daily", lambda db: spend(db, days90, by="provider", daily=True)),
        (
            "dashboard: tool calls page, team+status",
            lambda db: list_tool_calls(db, ToolCallFilter(team=team, statuses=limited)),
        ),
    ]
    return found


def run(engine: Engine, label: str, rounds: int = 5) -> list[tuple[str, str, float, float]]:
    with engine.connect() as conn:
        middle = conn.execute(text("SELECT count(*) FROM tool_calls")).scalar_one() // 2
        some_tool = conn.execute(text(f"SELECT id FROM tool_calls LIMIT 1 OFFSET {middle}")).scalar_one()
        some_request = conn.execute(
            text(f"SELECT request_id FROM model_requests LIMIT 1 OFFSET {middle}")
        ).scalar_one()
    results = []
    for name, question in questions(datetime.now(UTC), some_tool, some_request):
        times, cpu = [], []
        for _ in range(rounds):
            started, used = time.perf_counter(), time.process_time()
            question(engine)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - used)
        p50 = statistics.median(times)
        results.append((label, name, times[0], p50))
        print(
            f"  {label:10} {name:48} first {times[0] * 1000:8.1f} ms  p50 {p50 * 1000:8.1f} ms  "
            f"best {min(times) * 1000:8.1f} ms  cpu p50 {statistics.median(cpu) * 1000:8.1f} ms",
            flush=True,
        )
    return results


def seeded(label: str, seed: Callable[[], None], engine: Engine) -> None:
    started = time.perf_counter()
    seed()
    rebuild_rollups(engine)
    print(f"{label}: seeded in {time.perf_counter() - started:.1f} s", flush=True)


def upgraded(label: str, engine: Engine) -> None:
    started = time.perf_counter()
    applied = upgrade_database(engine).applied
    if applied:
        print(
            f"{label}: upgraded ({', '.join(applied)}) in {time.perf_counter() - started:.1f} s", flush=True
        )


def rollup_sizes(engine: Engine, label: str) -> None:
    with engine.connect() as conn:
        sizes = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("tool_calls", "model_requests", *(m.__tablename__ for m in ROLLUP_MODELS))
        }
    print(f"{label}: rows " + ", ".join(f"{table} {count}" for table, count in sizes.items()), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of the two tables")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="run one database only")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server (a scratch database is created there and dropped)",
    )
    parser.add_argument("--database", help="the scratch database's name (default reports_bench_<hex>)")
    parser.add_argument("--keep", help="SQLite: keep (or reuse) the seeded database at this path")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each query (p50 of them)")
    args = parser.parse_args()
    now = datetime.now(UTC)
    results: list[tuple[str, str, float, float]] = []
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(args.keep) if args.keep else Path(tmp) / "gateway.db"
            engine = make_engine(f"sqlite:///{path}")
            reused = bool(args.keep and path.exists() and path.stat().st_size > 0)
            upgraded("sqlite", engine)
            if not reused:
                seeded("sqlite", lambda: seed_sqlite(engine, args.rows, now), engine)
            rollup_sizes(engine, "sqlite")
            results += run(engine, "sqlite", args.rounds)
            engine.dispose()
    if args.only in (None, "postgresql"):
        name = args.database or f"reports_bench_{secrets.token_hex(4)}"
        server = args.postgres.rstrip("/")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            engine = make_engine(f"{server}/{name}")
            upgrade_database(engine)
            seeded("postgresql", lambda: seed_postgres(f"{server}/{name}", args.rows, now), engine)
            rollup_sizes(engine, "postgresql")
            results += run(engine, "postgresql", args.rounds)
            engine.dispose()
        finally:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    slow = [(label, name, p50) for label, name, _, p50 in results if p50 >= 1.0]
    print(f"\n{len(results)} queries; median p50 {statistics.median(r[3] for r in results) * 1000:.1f} ms; "
          f"slowest p50 {max(r[3] for r in results) * 1000:.1f} ms; over 1 s: {slow or 'none'}")  # fmt: skip
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
