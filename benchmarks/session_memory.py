"""Memory held by idle 2025-11-25 sessions, with small and with 1 MB initialize payloads.

    python benchmarks/session_memory.py [--sessions 10000]

Each case runs in a fresh process: the real app (``create_app``, its lifespan, the
/mcp endpoint, SQLite audit) is driven in process through ASGI, N sessions are
opened with ``initialize`` and left idle, and the growth of the process's resident
set size (RSS) is reported per 1,000 sessions. Cases:

- small: a Claude-Code-sized initialize (about 200 bytes);
- 1 MB accepted: 1 MB of ``capabilities`` with ``max_initialize_bytes`` raised to
  2 MiB, so the endpoint parses each payload and must drop all but a few fields;
- 1 MB refused: the same payload at the default ``max_initialize_bytes`` (64 KiB):
  every initialize gets 413 and no session is made.

Target: under 2 MB of RSS per 1,000 sessions whatever the payloads. Measurement,
not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
CASES = {
    "small": (None, 0),
    "1MB-accepted": (2 * 1024 * 1024, 1024 * 1024),
    "1MB-refused": (None, 1024 * 1024),
}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def initialize_body(padding: int) -> bytes:
    capabilities: dict[str, Any] = {"roots": {"listChanged": True}, "sampling": {}, "elicitation": {}}
    if padding:
        capabilities["experimental"] = {"padding": "x" * padding}
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "clientInfo": {"name": "claude-code", "version": "2.1.197"},
                "capabilities": capabilities,
            },
        }
    )


async def post(app: Any, state: dict[str, Any], body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"accept", b"application/json, text/event-stream"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "state": dict(state),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run_case(case: str, sessions: int) -> dict[str, Any]:
    from gateway_app.app import create_app
    from gateway_app.settings import Settings

    max_initialize, padding = CASES[case]
    workdir = Path(tempfile.mkdtemp(prefix="session-memory-"))
    gateway: dict[str, Any] = {
        "database_url": f"sqlite:///{workdir / 'audit.db'}",
        "max_sessions": sessions,
        "max_sessions_per_key": sessions,
    }
    if max_initialize is not None:
        gateway["max_initialize_bytes"] = max_initialize
    os.environ["BENCH_KEY"] = KEY
    policy = {"gateway": gateway, "virtual_keys": [{"id": "bench", "secret_env": "BENCH_KEY"}]}
    app = create_app(Settings.from_text(orjson.dumps(policy).decode()))
    body = initialize_body(padding)
    async with app.router.lifespan_context(app) as lifespan_state:
        assert lifespan_state is not None
        state = dict(lifespan_state)
        runtime = state["runtime"]
        for _ in range(50):  # warm-up: first-call allocations, then back to no sessions
            await post(app, state, body)
        runtime.sessions.close_all()
        gc.collect()
        before = rss_bytes()
        started = time.perf_counter()
        statuses: dict[str, int] = {}
        for _ in range(sessions):
            status = str(await post(app, state, body))
            statuses[status] = statuses.get(status, 0) + 1
        elapsed = time.perf_counter() - started
        gc.collect()
        after = rss_bytes()
        held = len(runtime.sessions)
        runtime.sessions.close_all()
    return {
        "case": case,
        "payload": len(body),
        "requests": sessions,
        "sessions": held,
        "statuses": statuses,
        "rss_growth": after - before,
        "rss_after": after,
        "seconds": elapsed,
    }


def report(results: list[dict[str, Any]]) -> None:
    print(f"{'case':14} {'payload B':>10} {'sessions':>9} {'RSS growth MB':>14} {'MB/1000':>8} {'statuses'}")
    for r in results:
        per_thousand = r["rss_growth"] / 1e6 / (r["requests"] / 1000)
        statuses = ", ".join(f"{code}x{count}" for code, count in sorted(r["statuses"].items()))
        print(
            f"{r['case']:14} {r['payload']:>10} {r['sessions']:>9} {r['rss_growth'] / 1e6:>14.2f} "
            f"{per_thousand:>8.3f} {statuses}  ({r['seconds']:.1f} s)"
        )
    print("MB/1000: RSS growth per 1,000 initialize requests (per 1,000 idle sessions where they were made)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.case:
        print(orjson.dumps(asyncio.run(run_case(args.case, args.sessions))).decode())
        return
    results = []
    for case in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", case, "--sessions", str(args.sessions)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        results.append(orjson.loads(out.stdout.splitlines()[-1]))
    report(results)


if __name__ == "__main__":
    main()
