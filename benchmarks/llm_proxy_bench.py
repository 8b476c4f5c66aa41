"""What the model proxy adds: direct calls to the mock model API against the same calls through the gateway.

One interleaved run (direct and proxied phases alternate, round by round), for
non-streaming and streaming /v1/messages at 1 and 32 concurrent clients, with a
virtual key, rate limits (key and team), budgets (org, team, key) and the ledger
(SQLite) all on. Prints p50/p99 latency, time to first byte, requests/s, the
ratios, and the gateway's CPU per proxied request (from /proc, so Linux only).

The mock and the gateway run as separate processes pinned to core 0 and this load
generator (the gateway's own keep-alive client, `HttpPool`, one pool per target) to
core 1 (on a machine with at least two cores), as in ../shared/notes/hot-path.md.

Until the model proxy dropped aiohttp, aiohttp was this load generator. HttpPool
costs less on core 1, so direct latencies are lower and, at one client, requests
come faster; the gateway's CPU per request then reads lower too (presumably
per-interval work such as the 50 ms ledger drains is spread over more requests):
for the same gateway, 0.37 ms per streamed request at one client here against
0.43-0.45 ms with aiohttp driving it. Compare runs made with the same load
generator only.

    .venv/bin/python benchmarks/llm_proxy_bench.py [--seconds 2] [--rounds 3] [--http-client httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from _support import BENCH_PREFIX, cpu_seconds, free_port, pin, redis_for

from gateway_common.http.pool import HttpPool

REPO = Path(__file__).resolve().parents[1]
SECRET = "mgw_bench_0123456789abcdef"
BODY = (
    b'{"model":"claude-haiku-4-5","max_tokens":256,'
    b'"messages":[{"role":"user","content":"Say hello in one short sentence, please."}]}'
)
STREAM_BODY = BODY[:-1] + b',"stream":true}'


def wait_for(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def gateway_config(
    workdir: Path,
    port: int,
    upstream: str,
    http_client: str = "auto",
    database_url: str | None = None,
    redis_url: str | None = None,
    row_writer: str = "process",
) -> dict[str, object]:
    import hashlib

    big = {"requests_per_minute": 10_000_000, "tokens_per_minute": 10**12, "concurrent_requests": 10_000}
    return {
        "gateway": {
            "host": "127.0.0.1",
            "port": port,
            "database_url": database_url or f"sqlite:///{workdir / 'gateway.db'}",
            "row_writer": row_writer,
            "audit": {"fallback_file": str(workdir / "audit-fallback.jsonl")},
        },
        **(
            {"counters": {"backend": "redis", "url": redis_url, "key_prefix": BENCH_PREFIX}}
            if redis_url
            else {}
        ),
        "teams": [{"name": "bench", "rate_limit": big}],
        "virtual_keys": [
            {
                "id": "bench",
                "team": "bench",
                "secret_sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
                "allowed_models": ["claude-*"],
                "rate_limit": big,
            }
        ],
        "providers": [
            {"name": "mock", "kind": "anthropic", "base_url": upstream, "http_client": http_client}
        ],
        "routes": [{"match": "claude-*", "provider": "mock"}],
        "budgets": {
            "org_level": {"monthly_limit_usd": 1_000_000},
            "teams": [{"name": "bench", "monthly_limit_usd": 1_000_000, "alert_threshold": 0.8}],
            "virtual_key_overrides": [{"id": "bench", "daily_limit_usd": 1_000_000}],
        },
        "llm_proxy": {"ledger_fallback_file": str(workdir / "ledger-fallback.jsonl")},
    }


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    errors: int = 0

    def add(self, other: Phase) -> None:
        self.latencies += other.latencies
        self.ttfbs += other.ttfbs
        self.wall += other.wall
        self.cpu += other.cpu
        self.errors += other.errors

    def p(self, q: float, values: list[float] | None = None) -> float:
        data = sorted(values if values is not None else self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


async def run_phase(pool: HttpPool, body: bytes, concurrency: int, seconds: float, gateway_pid: int) -> Phase:
    phase = Phase()
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": SECRET}
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            async with await pool.request("POST", "/v1/messages", headers, body) as response:
                first = None
                async for _chunk in response.iter_chunks():
                    if first is None:
                        first = time.perf_counter()
                if response.status != 200:
                    phase.errors += 1
            end = time.perf_counter()
            phase.latencies.append(end - t0)
            phase.ttfbs.append((first or end) - t0)

    cpu0 = cpu_seconds(gateway_pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.wall = time.perf_counter() - t0
    phase.cpu = cpu_seconds(gateway_pid) - cpu0
    return phase


async def bench(args: argparse.Namespace, mock_url: str, gateway_url: str, gateway_pid: int) -> int:
    total_proxied = 0
    pools = {"direct": HttpPool(mock_url), "proxy": HttpPool(gateway_url)}
    try:
        for pool in pools.values():  # warm up connections and caches
            for body in (BODY, STREAM_BODY):
                await run_phase(pool, body, 8, 0.5, gateway_pid)
        results: dict[tuple[str, int, str], Phase] = {}
        for _ in range(args.rounds):
            for mode, body in (("non-stream", BODY), ("stream", STREAM_BODY)):
                for concurrency in (1, 32):
                    for target, pool in pools.items():
                        phase = await run_phase(pool, body, concurrency, args.seconds, gateway_pid)
                        results.setdefault((mode, concurrency, target), Phase()).add(phase)
                        if target == "proxy":
                            total_proxied += len(phase.latencies)
    finally:
        for pool in pools.values():
            await pool.aclose()

    print(
        f"\n{'mode':10} {'C':>3} {'target':7} {'p50 ms':>8} {'p99 ms':>8} {'TTFB p50':>9} "
        f"{'req/s':>8} {'errors':>6}"
    )
    summary = []
    for mode in ("non-stream", "stream"):
        for concurrency in (1, 32):
            direct, proxy = results[(mode, concurrency, "direct")], results[(mode, concurrency, "proxy")]
            for name, phase in (("direct", direct), ("proxy", proxy)):
                print(
                    f"{mode:10} {concurrency:>3} {name:7} {phase.p(0.5):8.3f} {phase.p(0.99):8.3f} "
                    f"{phase.p(0.5, phase.ttfbs):9.3f} {phase.rate:8.0f} {phase.errors:>6}"
                )
            cpu_ms = proxy.cpu / len(proxy.latencies) * 1000
            summary.append(
                (
                    mode,
                    concurrency,
                    proxy.p(0.5) - direct.p(0.5),
                    proxy.p(0.5, proxy.ttfbs) - direct.p(0.5, direct.ttfbs),
                    proxy.p(0.99) / direct.p(0.99),
                    proxy.rate / direct.rate,
                    cpu_ms,
                )
            )
    print(
        f"\n{'mode':10} {'C':>3} {'added p50':>10} {'added TTFB':>11} {'p99 x':>7} {'req/s x':>8} "
        f"{'gw CPU/req':>11} {'req/s/core':>11}"
    )
    for mode, concurrency, added, added_ttfb, p99x, ratex, cpu_ms in summary:
        print(
            f"{mode:10} {concurrency:>3} {added:+9.3f}ms {added_ttfb:+10.3f}ms {p99x:7.2f} {ratex:8.2f} "
            f"{cpu_ms:9.3f}ms {1000 / cpu_ms:11.0f}"
        )
    return total_proxied


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each measured phase")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--http-client",
        choices=["auto", "fast", "httpx"],
        default="auto",
        help="the gateway's client towards the mock (httpx: what a provider behind a proxy gets)",
    )
    parser.add_argument("--database-url", help="the ledger's database (default: a new SQLite file)")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="count limits and budgets in this Redis instead of memory"
        " (own, own:CORE: a private redis-server, pinned to CORE)",
    )
    parser.add_argument(
        "--row-writer",
        choices=["process", "thread"],
        default="process",
        help="where the gateway writes its ledger rows (gateway.row_writer)",
    )
    args = parser.parse_args()
    with redis_for(args.redis) as args.redis:
        run(args)


def run(args: argparse.Namespace) -> None:
    pin(os.getpid(), 1)
    with tempfile.TemporaryDirectory(prefix="llm-bench-") as tmp:
        workdir = Path(tmp)
        mock_port, gateway_port = free_port(), free_port()
        config = workdir / "gateway.yaml"
        config.write_text(
            yaml.safe_dump(
                gateway_config(
                    workdir,
                    gateway_port,
                    f"http://127.0.0.1:{mock_port}",
                    args.http_client,
                    database_url=args.database_url,
                    redis_url=args.redis,
                    row_writer=args.row_writer,
                )
            )
        )
        logs = (workdir / "mock.log").open("wb"), (workdir / "gateway.log").open("wb")
        mock = subprocess.Popen(
            [sys.executable, "-m", "examples.servers.mock_model_api", "--port", str(mock_port)],
            cwd=REPO,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        )
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway_app", "serve", "--config", str(config), "--log-level", "warning"],
            cwd=REPO,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        )
        try:
            pin(mock.pid, 0)
            pin(gateway.pid, 0)
            wait_for(mock_port, mock, "mock model API")
            wait_for(gateway_port, gateway, "gateway")
            print(
                f"mock model API (pid {mock.pid}) and gateway (pid {gateway.pid}) on core 0, load on core 1; "
                f"{args.rounds} rounds x {args.seconds:g} s per phase; key, rate limits, budgets, ledger on"
            )
            proxied = asyncio.run(
                bench(args, f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{gateway_port}", gateway.pid)
            )
        finally:
            gateway.terminate()
            mock.terminate()
            gateway.wait(30)
            mock.wait(10)
        if args.database_url:  # the ledger is in that database: counted by whoever owns it
            return
        with sqlite3.connect(workdir / "gateway.db") as db:
            rows = db.execute(
                "select count(*), sum(cost_usd) from model_requests where status = 'ok'"
            ).fetchone()
        print(
            f"\nledger: {rows[0]} rows (>= {proxied} measured proxied requests plus warm-up), "
            f"${rows[1]:.2f} recorded"
        )


if __name__ == "__main__":
    main()
