"""tools/call throughput of `serve --workers 1` and `serve --workers 2` on this machine, interleaved.

    python benchmarks/workers.py [--rounds 10] [--calls 2000] [--concurrency 32] [--redis URL]

Starts two gateways from the same policy (stdio upstream: each worker runs its own copy, so the
upstream scales with the workers; counters in Redis under a key prefix of its own; a shared
session secret), one with one worker and one with two, then alternates rounds of 2026-07-28
tools/call from the raw keep-alive client of `mcp_tools_call` over ``--concurrency``
connections (the kernel spreads connections over the workers' SO_REUSEPORT sockets).
Alternating rounds keeps other load on the machine from favouring either side. The load
generator is pinned to the last core; the gateways are not pinned (two workers need both
cores of a 2-core machine, so the client necessarily shares a core with one of them).
Prints calls/s and p50/p99 for each, and the scaling factor (two workers / one).

Timing lives here, never in a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from _support import free_port, pin, stop, wait_ready
from mcp_tools_call import UPSTREAM, RawClient, Samples, request_bytes, run_round

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"


def start_gateway(
    workdir: Path, name: str, workers: int, redis_url: str, env: dict[str, str]
) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(
        orjson.dumps(
            {
                "gateway": {
                    "port": port,
                    "database_url": f"sqlite:///{workdir / 'audit.db'}",
                    "session_secret_env": "BENCH_SESSION_SECRET",
                },
                "counters": {
                    "backend": "redis",
                    "url": redis_url,
                    "key_prefix": f"bench_{secrets.token_hex(4)}:",
                },
                "virtual_keys": [{"id": "bench", "secret_env": "BENCH_KEY"}],
                "mcp": {
                    "servers": [
                        {
                            "name": "bench",
                            "command": sys.executable,
                            "args": [str(workdir / "upstream.py"), "stdio"],
                        }
                    ],
                    "virtual_key_permissions": {"bench": "*"},
                },
            }
        ).decode()
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_app",
            "serve",
            "--config",
            str(config),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{name}.log").open("wb"),
    )
    wait_ready(port, proc)
    return port, proc


async def measure(ports: dict[str, int], concurrency: int, rounds: int, calls: int) -> dict[str, Samples]:
    clients = {
        name: [
            RawClient(port, request_bytes(port, "bench__echo", f"Bearer {KEY}")) for _ in range(concurrency)
        ]
        for name, port in ports.items()
    }
    for group in clients.values():
        for client in group:
            await client.connect()
    per_client = max(1, calls // concurrency)
    for group in clients.values():  # warm-up: connections, upstream first calls, both workers
        await run_round(group, 30, Samples())
    samples = {name: Samples() for name in ports}
    for _ in range(rounds):
        for name, group in clients.items():
            await run_round(group, per_client, samples[name])
    for group in clients.values():
        for client in group:
            await client.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round (split across connections)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-workers-"))
    (workdir / "upstream.py").write_text(UPSTREAM)
    env = {
        **os.environ,
        "BENCH_KEY": KEY,
        "BENCH_SESSION_SECRET": secrets.token_hex(32),
        "PYTHONPATH": str(ROOT),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports: dict[str, int] = {}
        for name, workers in (("1 worker", 1), ("2 workers", 2)):
            port, proc = start_gateway(workdir, name.replace(" ", "-"), workers, args.redis, env)
            ports[name] = port
            procs.append(proc)
        pin(os.getpid(), (os.cpu_count() or 1) - 1)
        print(
            f"cores: {os.cpu_count()}, client pinned to core {(os.cpu_count() or 1) - 1}; logs in {workdir}"
        )
        samples = asyncio.run(measure(ports, args.concurrency, args.rounds, args.calls))
        print(f"{'gateway':>10} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for name, s in samples.items():
            print(f"{name:>10} {s.rate:9.0f} {s.p(0.5):8.3f} {s.p(0.99):8.3f}")
        one, two = samples["1 worker"].rate, samples["2 workers"].rate
        print(f"scaling factor (2 workers / 1): x{two / one:.2f}")
    finally:
        stop(*procs)


if __name__ == "__main__":
    main()
