"""What a killed gateway loses: answered calls without an audit row, model requests without a ledger row.

    python benchmarks/sigkill_loss.py [--runs 3] [--seconds 5] [--tool-rate 400] [--stream-rate 40]
                                      [--signal KILL|TERM] [--flush-ms 50]

Starts a real MCP upstream (the mcp SDK's server, streamable HTTP, tool ``echo``),
the mock model API (streams of ``--reply-words`` events ``--chunk-delay-ms`` apart,
so streams are in flight at any moment) and `mcp-gateway serve` (SQLite, audit and
ledger flushed every ``--flush-ms``), drives tools/call and streamed /v1/messages at steady rates
(open loop), then sends the gateway SIGKILL (or SIGTERM, for comparison) and counts:

- tool calls answered (a JSON-RPC result received) that have no audit row;
- streams answered to the end (``message_stop`` received) that have no ledger row;
- streams in flight at the kill (headers received, end not) and how many have a row.

Not a test: the figures depend on rates and timing. README "Durability" quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml
from _support import free_port, pin, wait_ready
from mcp_tools_call import ENVELOPE, UPSTREAM

from gateway_common.http.pool import HttpPool

ROOT = Path(__file__).resolve().parents[1]
SECRET = "mgw_bench_sigkill_0123456789abcdef"
STREAM_BODY = (
    b'{"model":"claude-haiku-4-5","max_tokens":256,"stream":true,'
    b'"messages":[{"role":"user","content":"Say hello in a few words, please."}]}'
)


@dataclass
class Tally:
    tool_answered: set[str] = field(default_factory=set)
    streams_done: set[str] = field(default_factory=set)
    streams_open: set[str] = field(default_factory=set)
    errors: int = 0


def gateway_config(
    workdir: Path, port: int, upstream_port: int, mock_port: int, flush_ms: int
) -> dict[str, object]:
    return {
        "gateway": {
            "port": port,
            "database_url": f"sqlite:///{workdir / 'gateway.db'}",
            "audit": {"fallback_file": str(workdir / "audit-fallback.jsonl"), "flush_interval_ms": flush_ms},
        },
        "virtual_keys": [{"id": "bench", "secret_sha256": hashlib.sha256(SECRET.encode()).hexdigest()}],
        "mcp": {
            "servers": [{"name": "bench", "url": f"http://127.0.0.1:{upstream_port}/mcp"}],
            "virtual_key_permissions": {"bench": "*"},
        },
        "providers": [{"name": "mock", "kind": "anthropic", "base_url": f"http://127.0.0.1:{mock_port}"}],
        "routes": [{"match": "claude-*", "provider": "mock"}],
        "llm_proxy": {
            "ledger_fallback_file": str(workdir / "ledger-fallback.jsonl"),
            "ledger_flush_interval_ms": flush_ms,
        },
    }


async def tool_call(pool: HttpPool, ident: int, tally: Tally) -> None:
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": ident,
            "method": "tools/call",
            "params": {"name": "bench__echo", "arguments": {"text": "hello"}, "_meta": ENVELOPE},
        }
    )
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "bench__echo",
        "authorization": f"Bearer {SECRET}",
    }
    try:
        async with await pool.request("POST", "/mcp", headers, body) as response:
            answer = await response.read()
        if response.status == 200 and b'"result"' in answer:
            tally.tool_answered.add(str(ident))
    except Exception:
        tally.errors += 1


async def stream(pool: HttpPool, tally: Tally) -> None:
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": SECRET}
    request_id = None
    try:
        async with await pool.request("POST", "/v1/messages", headers, STREAM_BODY) as response:
            request_id = response.headers.get("gateway-request-id")
            if request_id is None or response.status != 200:
                tally.errors += 1
                return
            tally.streams_open.add(request_id)
            seen = b""
            async for chunk in response.iter_chunks():
                seen = (seen + chunk)[-200:]
            if b"message_stop" in seen:
                tally.streams_open.discard(request_id)
                tally.streams_done.add(request_id)
    except Exception:
        tally.errors += 1


async def drive(
    port: int, gateway: subprocess.Popen[bytes], args: argparse.Namespace, tally: Tally
) -> tuple[set[str], set[str]]:
    """Steady load, then the signal; returns what was answered before it was sent."""
    pools = [HttpPool(f"http://127.0.0.1:{port}", read_timeout=30) for _ in range(2)]
    tasks: set[asyncio.Task[None]] = set()
    ids = itertools.count(1)
    tick = 0.01
    started = time.perf_counter()
    tool_due = stream_due = 0.0
    while time.perf_counter() - started < args.seconds:
        tool_due += args.tool_rate * tick
        stream_due += args.stream_rate * tick
        while tool_due >= 1:
            tool_due -= 1
            tasks.add(asyncio.create_task(tool_call(pools[0], next(ids), tally)))
        while stream_due >= 1:
            stream_due -= 1
            tasks.add(asyncio.create_task(stream(pools[1], tally)))
        tasks = {t for t in tasks if not t.done()}
        await asyncio.sleep(tick)
    answered_tools, answered_streams = set(tally.tool_answered), set(tally.streams_done)
    gateway.send_signal(signal.SIGKILL if args.signal == "KILL" else signal.SIGTERM)
    await asyncio.gather(*tasks, return_exceptions=True)
    for pool in pools:
        await pool.aclose()
    return answered_tools, answered_streams


def stored_ids(db: Path) -> tuple[set[str], set[str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        audit = {str(row[0]) for row in conn.execute("SELECT request_id FROM tool_calls")}
        ledger = {str(row[0]) for row in conn.execute("SELECT request_id FROM model_requests")}
    return audit, ledger


def one_run(args: argparse.Namespace, upstream_port: int, mock_port: int, number: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="sigkill-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        config = workdir / "gateway.yaml"
        config.write_text(
            yaml.safe_dump(gateway_config(workdir, port, upstream_port, mock_port, args.flush_ms))
        )
        with (workdir / "gateway.log").open("wb") as log:
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway_app",
                    "serve",
                    "--config",
                    str(config),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            pin(gateway.pid, 0)
            wait_ready(port, gateway)
            tally = Tally()
            answered_tools, answered_streams = asyncio.run(drive(port, gateway, args, tally))
            gateway.wait(60)
        finally:
            if gateway.poll() is None:
                gateway.kill()
                gateway.wait()
        audit, ledger = stored_ids(workdir / "gateway.db")
        open_at_kill = tally.streams_open | (tally.streams_done - answered_streams)
        result = {
            "tools_answered": len(answered_tools),
            "tools_without_row": len(answered_tools - audit),
            "streams_done": len(answered_streams),
            "streams_without_row": len(answered_streams - ledger),
            "streams_in_flight": len(open_at_kill),
            "in_flight_with_row": len(open_at_kill & ledger),
            "exit": gateway.returncode,
        }
        print(
            f"run {number}: {result['tools_answered']:6} tool calls answered, "
            f"{result['tools_without_row']:3} without an audit row | "
            f"{result['streams_done']:5} streams answered, "
            f"{result['streams_without_row']:3} without a ledger row | "
            f"{result['streams_in_flight']:3} in flight, {result['in_flight_with_row']:3} with a row | "
            f"exit {gateway.returncode}"
        )
        return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="load before the signal")
    parser.add_argument("--tool-rate", type=float, default=400.0, help="tools/call per second")
    parser.add_argument("--stream-rate", type=float, default=40.0, help="streamed /v1/messages per second")
    parser.add_argument("--reply-words", type=int, default=25, help="events per streamed reply")
    parser.add_argument("--chunk-delay-ms", type=float, default=20.0, help="gap between stream events")
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    parser.add_argument("--flush-ms", type=int, default=50, help="audit and ledger flush interval")
    args = parser.parse_args()
    pin(os.getpid(), 1)
    with tempfile.TemporaryDirectory(prefix="sigkill-upstreams-") as tmp:
        workdir = Path(tmp)
        upstream_port, mock_port = free_port(), free_port()
        (workdir / "upstream.py").write_text(UPSTREAM)
        upstream = subprocess.Popen(
            [sys.executable, str(workdir / "upstream.py"), str(upstream_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        mock = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "examples.servers.mock_model_api",
                "--port",
                str(mock_port),
                "--reply-words",
                str(args.reply_words),
                "--chunk-delay-ms",
                str(args.chunk_delay_ms),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for proc in (upstream, mock):
                pin(proc.pid, 0)
            wait_ready(mock_port, mock, "/")
            deadline = time.monotonic() + 30
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", upstream_port), 0.5),
                ):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the MCP upstream did not start")
                time.sleep(0.1)
            print(
                f"SIG{args.signal} after {args.seconds:g} s of {args.tool_rate:g} tools/call/s and "
                f"{args.stream_rate:g} streams/s "
                f"({args.reply_words} events {args.chunk_delay_ms:g} ms apart); "
                f"audit and ledger flush every {args.flush_ms} ms"
            )
            results = [one_run(args, upstream_port, mock_port, n + 1) for n in range(args.runs)]
        finally:
            for proc in (mock, upstream):
                proc.terminate()
                proc.wait(15)
    worst = {key: max(r[key] for r in results) for key in results[0]}
    print(
        f"worst of {args.runs}: {worst['tools_without_row']} answered tool calls without an audit row, "
        f"{worst['streams_without_row']} answered streams without a ledger row, "
        f"{worst['in_flight_with_row']} of up to {worst['streams_in_flight']} in-flight streams with a row"
    )


if __name__ == "__main__":
    main()
