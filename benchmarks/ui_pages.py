"""Each dashboard page's server time on 1,000,000 tool calls and 1,000,000 model requests (SQLite),
seeded as benchmarks/reports.py seeds them; the goal is under 300 ms a page.

    python benchmarks/ui_pages.py                       # 1,000,000 rows each
    python benchmarks/ui_pages.py --rows 100000 --keep /tmp/ui-bench.db

The whole app runs in this process with its lifespan (no upstream servers), a session is opened
with an admin token, and each page is requested through httpx's ASGITransport: the time is the
server's (routing, session check, queries in worker threads, template), without a socket. Each page
is requested three times; the table shows the first (cold) and the best time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from reports import POLICY, seed_sqlite
from sqlalchemy import text

from gateway_app.app import create_app
from gateway_app.database import upgrade_database
from gateway_app.settings import Settings
from gateway_common.db import make_engine

TOKEN = "bench-admin-token-0123456789abcdef"
GOAL_SECONDS = 0.3
ADMIN = """
admin:
  tokens: [{id: bench, role: admin, secret_env: UI_BENCH_ADMIN_TOKEN}]
"""


async def measure(database_url: str, rounds: int) -> list[tuple[str, float, float]]:
    os.environ["UI_BENCH_ADMIN_TOKEN"] = TOKEN
    settings = Settings.from_text(POLICY + ADMIN, database_url=database_url)
    app = create_app(settings)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        middle = conn.execute(text("SELECT count(*) FROM tool_calls")).scalar_one() // 2
        some_call = conn.execute(text(f"SELECT id FROM tool_calls LIMIT 1 OFFSET {middle}")).scalar_one()
    engine.dispose()
    results = []
    async with app.router.lifespan_context(app) as maybe_state:
        state: dict[str, Any] = dict(maybe_state or {})

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, "state": dict(state)}, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as http:
            form = await http.get("/ui/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            done = await http.post("/ui/login", data={"csrf": csrf.group(1), "token": TOKEN})
            assert done.status_code == 303, done.text
            first_page = await http.get("/ui/tool-calls")
            cursor = re.search(r'rel="next" href="/ui/tool-calls\?cursor=([^"&]+)', first_page.text)
            pages = [
                ("overview", "/ui/"),
                ("spend (30 days, by team)", "/ui/spend"),
                ("spend (this month, by key)", "/ui/spend?by=key&month=this"),
                ("spend (one team, 90 days)", "/ui/spend?team=team03&since=90d"),
                ("budgets", "/ui/budgets"),
                ("limits (30 days, per key)", "/ui/limits"),
                ("limits (per team)", "/ui/limits?by=team"),
                ("tool calls", "/ui/tool-calls"),
                ("tool calls, next page", f"/ui/tool-calls?cursor={cursor.group(1) if cursor else ''}"),
                ("tool calls --team", "/ui/tool-calls?team=team03"),
                ("tool calls --status rate_limited", "/ui/tool-calls?status=rate_limited"),
                ("tool calls --server --tool", "/ui/tool-calls?server=server3&tool=tool_3_2"),
                ("tool call detail", f"/ui/tool-calls/{some_call}"),
                ("upstreams", "/ui/upstreams"),
                ("keys", "/ui/keys"),
                ("policy", "/ui/policy"),
            ]
            for name, path in pages:
                times = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    answer = await http.get(path)
                    times.append(time.perf_counter() - started)
                    assert answer.status_code == 200, (path, answer.status_code)
                results.append((name, times[0], min(times)))
                print(
                    f"  {name:36} first {times[0] * 1000:8.1f} ms  best {min(times) * 1000:8.1f} ms",
                    flush=True,
                )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of the two tables")
    parser.add_argument("--keep", help="keep (or reuse) the seeded SQLite database at this path")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "gateway.db"
        url = f"sqlite:///{path}"
        if not (args.keep and path.exists() and path.stat().st_size > 0):
            engine = make_engine(url)
            upgrade_database(engine)
            started = time.perf_counter()
            seed_sqlite(engine, args.rows, datetime.now(UTC))
            engine.dispose()
            print(
                f"sqlite: seeded {args.rows:,} + {args.rows:,} rows in {time.perf_counter() - started:.1f} s"
            )
        results = asyncio.run(measure(url, args.rounds))
    slow = [(name, round(best * 1000)) for name, _, best in results if best >= GOAL_SECONDS]
    print(f"\n{len(results)} pages; median best {statistics.median(r[2] for r in results) * 1000:.1f} ms; "
          f"slowest {max(r[2] for r in results) * 1000:.1f} ms; over {GOAL_SECONDS * 1000:.0f} ms: "
          f"{slow or 'none'}")  # fmt: skip
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
