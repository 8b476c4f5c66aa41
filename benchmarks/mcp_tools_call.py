"""tools/call: direct to an upstream vs through the gateway, interleaved in one run.

    python benchmarks/mcp_tools_call.py [--rounds 20] [--calls 200] [--concurrency 1 16]
        [--upstream http|stdio|sse]

Starts a real MCP upstream (the mcp SDK's server, streamable HTTP, one trivial
tool) and the gateway (a subprocess running `mcp-gateway serve`, audit log on
SQLite), then alternates rounds of calls straight to the upstream and through
the gateway from a cheap raw JSON-RPC client (keep-alive HTTP/1.1, prebuilt
requests, httptools parsing), with a third kind of round through a bare TCP relay
(`_relay.py`: what any second process on the path costs, the floor under the
gateway's p50 and p99). Prints p50/p99 latency, calls/s, the gateway/direct
ratios, the gateway over the relay and the gateway's CPU per call. With ``--upstream stdio``
the gateway runs the same server as its stdio child instead, and with ``--upstream sse`` it
reaches a second copy over the older HTTP+SSE transport (the direct rounds still go to it over
streamable HTTP). On Linux the servers are
pinned to CPU 0 and this client to CPU 1, so the client does not steal from them.

Timing lives here, never in a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import orjson
from _support import BENCH_PREFIX, cpu_seconds, free_port, pin, redis_for

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
UPSTREAM = """
import sys
from mcp.server import MCPServer
server = MCPServer("bench-upstream", version="1")

@server.tool()
async def echo(text: str) -> str:
    '''Return the text.'''
    return text

if sys.argv[1] == "stdio":
    server.run("stdio")
elif sys.argv[1] == "sse":
    server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
else:
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]), streamable_http_path="/mcp")
"""
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
}


def request_bytes(port: int, tool: str, authorization: str | None) -> bytes:
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": "hello"}, "_meta": ENVELOPE},
        }
    )
    headers = [
        "POST /mcp HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        "MCP-Protocol-Version: 2026-07-28",
        "Mcp-Method: tools/call",
        f"Mcp-Name: {tool}",
        f"Content-Length: {len(body)}",
    ]
    if authorization:
        headers.append(f"Authorization: {authorization}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


class RawClient:
    """One keep-alive connection sending a prebuilt request and reading whole responses."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self._done = asyncio.Event()
        self._body: list[bytes] = []
        self.status = 0
        self._parser = httptools.HttpResponseParser(self)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._done.set()

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def call(self) -> bytes:
        self._done.clear()
        self._body.clear()
        self.writer.write(self.request)
        while not self._done.is_set():
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._parser.feed_data(data)
        body = b"".join(self._body)
        if self.status != 200 or b'"result"' not in body:
            raise RuntimeError(f"bad response {self.status}: {body[:200]!r}")
        return body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    calls: int = 0
    cpu: float = 0.0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed if self.elapsed else 0.0


async def run_round(clients: list[RawClient], calls_per_client: int, samples: Samples) -> None:
    async def worker(client: RawClient) -> None:
        for _ in range(calls_per_client):
            started = time.perf_counter()
            await client.call()
            samples.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    samples.elapsed += time.perf_counter() - started
    samples.calls += calls_per_client * len(clients)


async def measure(
    upstream_port: int,
    relay_port: int,
    gateway_port: int,
    gateway_pid: int,
    concurrency: int,
    rounds: int,
    calls: int,
) -> tuple[Samples, Samples, Samples]:
    direct_req = request_bytes(upstream_port, "echo", None)
    gateway_req = request_bytes(gateway_port, "bench__echo", f"Bearer {KEY}")
    direct = [RawClient(upstream_port, direct_req) for _ in range(concurrency)]
    relayed = [RawClient(relay_port, direct_req) for _ in range(concurrency)]
    through = [RawClient(gateway_port, gateway_req) for _ in range(concurrency)]
    for client in (*direct, *relayed, *through):
        await client.connect()
    per_client = max(1, calls // concurrency)
    # Warm-up: connections, caches, the upstream's first-call costs.
    await run_round(direct, 20, Samples())
    await run_round(relayed, 20, Samples())
    await run_round(through, 20, Samples())
    direct_samples, relay_samples, gateway_samples = Samples(), Samples(), Samples()
    for _ in range(rounds):
        await run_round(direct, per_client, direct_samples)
        await run_round(relayed, per_client, relay_samples)
        before = cpu_seconds(gateway_pid)
        await run_round(through, per_client, gateway_samples)
        gateway_samples.cpu += cpu_seconds(gateway_pid) - before
    for client in (*direct, *relayed, *through):
        await client.close()
    return direct_samples, relay_samples, gateway_samples


def wait_http(port: int, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                if b" 200 " in sock.recv(200):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port} {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200, help="calls per round (split across clients)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--upstream",
        choices=["http", "stdio", "sse"],
        default="http",
        help="how the gateway reaches the upstream (direct calls always use HTTP)",
    )
    parser.add_argument("--database-url", help="the audit database (default: a new SQLite file)")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="count the key's limit in this Redis instead of memory"
        " (own, own:CORE: a private redis-server, pinned to CORE)",
    )
    parser.add_argument(
        "--uncounted",
        action="store_true",
        help="give the key no tool_calls_per_minute limit (the first release's benchmark: nothing counted)",
    )
    parser.add_argument(
        "--row-writer",
        choices=["process", "thread"],
        default="process",
        help="where the gateway writes its audit rows (gateway.row_writer)",
    )
    args = parser.parse_args()
    with redis_for(args.redis) as args.redis:
        run(args)


def run(args: argparse.Namespace) -> None:

    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    upstream_port, gateway_port = free_port(), free_port()
    (workdir / "upstream.py").write_text(UPSTREAM)
    if args.upstream == "stdio":
        server: dict[str, object] = {
            "name": "bench",
            "command": sys.executable,
            "args": [str(workdir / "upstream.py"), "stdio"],
        }
    elif args.upstream == "sse":
        sse_port = free_port()
        server = {"name": "bench", "transport": "sse", "url": f"http://127.0.0.1:{sse_port}/sse"}
    else:
        server = {"name": "bench", "url": f"http://127.0.0.1:{upstream_port}/mcp"}
    database_url = args.database_url or f"sqlite:///{workdir / 'audit.db'}"
    policy: dict[str, object] = {
        "gateway": {"port": gateway_port, "database_url": database_url, "row_writer": args.row_writer},
        # A limit it never reaches, so every call is counted (in memory, or in Redis with --redis).
        "virtual_keys": [
            {"id": "bench", "secret_env": "BENCH_KEY"}
            | ({} if args.uncounted else {"rate_limit": {"tool_calls_per_minute": 10_000_000}})
        ],
        "mcp": {"servers": [server], "virtual_key_permissions": {"bench": "*"}},
    }
    if args.redis:
        policy["counters"] = {
            "backend": "redis",
            "url": args.redis,
            "key_prefix": BENCH_PREFIX,
        }
    (workdir / "gateway.yaml").write_text(orjson.dumps(policy).decode())
    print(
        f"audit database: {database_url.split('@')[-1]}, written from a {args.row_writer}; "
        f"counters: {'redis' if args.redis else 'memory'}"
    )
    env = {**os.environ, "BENCH_KEY": KEY, "PYTHONPATH": str(ROOT)}
    upstream = subprocess.Popen(
        [sys.executable, str(workdir / "upstream.py"), str(upstream_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = sse_upstream = None
    relay_port = free_port()
    relay = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "_relay.py"), str(relay_port), str(upstream_port)]
    )
    try:
        if args.upstream == "sse":
            sse_upstream = subprocess.Popen(
                [sys.executable, str(workdir / "upstream.py"), "sse", str(sse_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_http_port_open(sse_port)
            pin(sse_upstream.pid, 0)
        wait_http_port_open(upstream_port)
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway_app",
                "serve",
                "--config",
                str(workdir / "gateway.yaml"),
                "--log-level",
                "warning",
            ],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "gateway.log").open("wb"),
        )
        wait_http(gateway_port, "/readyz")
        pin(upstream.pid, 0)
        pin(gateway.pid, 0)
        pin(relay.pid, 0)
        for child in children(gateway.pid):  # a stdio upstream
            pin(child, 0)
        pin(os.getpid(), 1)
        leg = {
            "http": "streamable HTTP (2026-07-28)",
            "stdio": "stdio (2025-11-25)",
            "sse": "HTTP+SSE (2025-11-25 over the 2024-11-05 transport)",
        }[args.upstream]
        print(f"upstream: mcp SDK MCPServer, gateway reaches it over {leg}, tool 'echo'; audit on: {workdir}")
        print(f"{'clients':>7} {'target':>8} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9} {'CPU/call ms':>12}")
        for concurrency in args.concurrency:
            direct, relayed, through = asyncio.run(
                measure(
                    upstream_port,
                    relay_port,
                    gateway_port,
                    gateway.pid,
                    concurrency,
                    args.rounds,
                    args.calls,
                )
            )
            report(concurrency, direct, relayed, through)
    finally:
        for proc in (gateway, relay, upstream, sse_upstream):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def report(concurrency: int, direct: Samples, relay: Samples, through: Samples) -> None:
    cpu_per_call = through.cpu / through.calls * 1000
    p50, p99 = (direct.p(0.5), through.p(0.5)), (direct.p(0.99), through.p(0.99))
    print(f"{concurrency:>7} {'direct':>8} {p50[0]:8.3f} {p99[0]:8.3f} {direct.rate:9.0f}")
    print(f"{concurrency:>7} {'relay':>8} {relay.p(0.5):8.3f} {relay.p(0.99):8.3f} {relay.rate:9.0f}")
    print(
        f"{concurrency:>7} {'gateway':>8} {p50[1]:8.3f} {p99[1]:8.3f} {through.rate:9.0f} "
        f"{cpu_per_call:12.3f}"
    )
    print(
        f"{'':>7} {'ratio':>8} x{p50[1] / p50[0]:7.2f} x{p99[1] / p99[0]:7.2f} "
        f"x{through.rate / direct.rate:8.2f}"
        f"   added p50 {p50[1] - p50[0]:+.3f} ms, p99 {p99[1] - p99[0]:+.3f} ms"
    )
    print(
        f"{'':>7} {'- relay':>8} {p50[1] - relay.p(0.5):+8.3f} {p99[1] - relay.p(0.99):+8.3f}"
        f"   the gateway over a bare TCP relay (benchmarks/_relay.py) at p50 and p99"
    )


def children(pid: int) -> list[int]:
    """Child process ids (Linux /proc), e.g. the gateway's stdio upstream."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def wait_http_port_open(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


if __name__ == "__main__":
    main()
