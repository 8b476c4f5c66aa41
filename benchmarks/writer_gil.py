"""What the audit writer does to the event loop's latency (the p99 of issue 7): in a thread of the
serving process, or in the writer process (``gateway.row_writer``).

    python benchmarks/writer_gil.py [--round-trips 10000] [--rounds 3]

An asyncio loop plays ping-pong with an echo server in another process (200 bytes over loopback
TCP, 0.3 ms apart, as one client's calls would be) and hands the real `AuditWriter` one row per
round trip, as tools/call does; the writer stores them in SQLite every 50 ms. Phases alternate:
no writer, the writer in a thread, the writer in the writer process. Prints p50/p90/p99/p99.9 of
the round trip: what the writer's own Python work (cleaning rows, building the insert, folding the
rollups) costs requests that arrive while it holds the GIL. Timing lives here, never in a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _support import ROOT

sys.path.insert(0, str(ROOT))

from gateway_app.app import WRITER_MODULES
from gateway_app.database import create_schema
from gateway_app.serving import SERVE_SWITCH_INTERVAL
from gateway_common.db import make_engine
from gateway_common.writers.process import WriterProcess
from mcp_gateway.audit import AuditWriter
from policies.gateway_settings import AuditSettings

ECHO = """
import socket
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(65536):
    conn.sendall(data)
"""


def audit_row(n: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "timestamp": datetime.now(UTC),
        "request_id": str(n),
        "key_id": "bench",
        "key_name": "bench",
        "team": None,
        "client_name": "bench",
        "client_version": "1",
        "session_id": None,
        "protocol_version": "2026-07-28",
        "exposed_name": "bench__echo",
        "server": "bench",
        "tool": "echo",
        "arguments": {"text": "hello world", "n": n},
        "arguments_truncated": False,
        "result": {"content": [{"type": "text", "text": "hello world"}], "isError": False},
        "result_truncated": False,
        "status": "ok",
        "error": None,
        "latency_ms": 1.2,
        "upstream_latency_ms": 1.0,
    }


async def phase(mode: str, round_trips: int, workdir: Path) -> list[float]:
    url = f"sqlite:///{workdir / f'{mode}-{time.monotonic_ns()}.db'}"
    engine = make_engine(url)
    create_schema(engine)
    process = None
    if mode == "process":
        process = WriterProcess(url, preload=WRITER_MODULES)
        await process.start()
    writer = AuditWriter(
        engine, AuditSettings(fallback_file=str(workdir / "fallback.jsonl")), process=process
    )
    await writer.start()
    echo = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE)
    assert echo.stdout is not None
    reader, sender = await asyncio.open_connection("127.0.0.1", int(echo.stdout.readline()))
    message, took = b"x" * 200, []
    try:
        for n in range(round_trips):
            start = time.perf_counter()
            sender.write(message)
            await reader.readexactly(len(message))
            took.append(time.perf_counter() - start)
            if mode != "none":
                writer.submit(audit_row(n))  # type: ignore[arg-type]
            await asyncio.sleep(0.0003)
    finally:
        sender.close()
        echo.kill()
        echo.wait()
        await writer.aclose()
        if process is not None:
            await process.close()
        engine.dispose()
    if mode != "none":
        assert writer.written == round_trips, (writer.written, round_trips)
    return sorted(took)


def quantile(values: list[float], q: float) -> float:
    return values[int(q * (len(values) - 1))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--round-trips", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.setswitchinterval(SERVE_SWITCH_INTERVAL)  # as `serve` runs
    print(f"pid {os.getpid()}; {args.round_trips} round trips per phase; milliseconds")
    print(f"{'writer':>8} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7}")
    with tempfile.TemporaryDirectory(prefix="writer-gil-") as tmp:
        for _ in range(args.rounds):
            for mode in ("none", "thread", "process"):
                took = asyncio.run(phase(mode, args.round_trips, Path(tmp)))
                print(
                    f"{mode:>8} {quantile(took, 0.5):7.3f} {quantile(took, 0.9):7.3f} "
                    f"{quantile(took, 0.99):7.3f} {quantile(took, 0.999):7.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
