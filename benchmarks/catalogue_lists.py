"""tools/list, resources/list and prompts/list for a key that sees 1,000 tools across 50 upstreams.

    python benchmarks/catalogue_lists.py [--upstreams 50] [--tools 20] [--calls 300] [--era 2026 2025]

Starts the gateway (a subprocess running `mcp-gateway serve`, audit on SQLite) with N stdio
upstreams, each a tiny raw JSON-RPC server (no SDK, so 50 of them start in seconds) listing
``--tools`` tools with realistic descriptions and schemas, 4 resources, a resource template and
2 prompts. One key may use every server (a list of all 50). One client then sends each list
request ``--calls`` times over one keep-alive connection (2026-07-28 stateless POSTs, and/or
2025-11-25 POSTs on a session) and reports p50/p99 latency and the answer's size. Target:
p50 under 5 ms for each list at one client. On Linux the gateway and its children are pinned to
CPU 0 and this client to CPU 1.

Timing lives here, never in a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from _support import free_port, pin, wait_ready
from mcp_tools_call import RawClient, children

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
UPSTREAM = r"""
import json, sys
name, count = sys.argv[1], int(sys.argv[2])
tools = [
    {
        "name": f"tool_{i:03d}",
        "description": f"Tool {i} of {name}: does one specific thing to the records it is given and reports "
        "what changed, so the model can decide what to do next.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Which record to work on."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                "dry_run": {"type": "boolean", "description": "Report without changing anything."},
            },
            "required": ["path"],
        },
        "annotations": {"readOnlyHint": i % 2 == 0},
    }
    for i in range(count)
]
resources = [
    {"uri": f"file:///{name}/doc_{i}.md", "name": f"doc_{i}", "mimeType": "text/markdown"} for i in range(4)
]
templates = [{"uriTemplate": f"file:///{name}/{{path}}", "name": "file", "mimeType": "text/plain"}]
prompts = [
    {"name": f"review_{i}", "description": "Review a change.", "arguments": [{"name": "topic"}]}
    for i in range(2)
]
results = {
    "tools/list": {"tools": tools},
    "resources/list": {"resources": resources},
    "resources/templates/list": {"resourceTemplates": templates},
    "prompts/list": {"prompts": prompts},
    "ping": {},
}
capabilities = {kind: {"listChanged": True} for kind in ("tools", "resources", "prompts")}
for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message:
        continue
    method = message["method"]
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": capabilities,
                  "serverInfo": {"name": name, "version": "1"}}
    elif method in results:
        result = results[method]
    else:
        reply = {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "no"}}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        continue
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
    sys.stdout.flush()
"""
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
}
METHODS = ("tools/list", "resources/list", "prompts/list")


def request_bytes(port: int, method: str, era: str, session: str | None) -> bytes:
    params = {"_meta": ENVELOPE} if era == "2026" else {}
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    headers = [
        "POST /mcp HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        f"Authorization: Bearer {KEY}",
        f"Content-Length: {len(body)}",
    ]
    if era == "2026":
        headers += ["MCP-Protocol-Version: 2026-07-28", f"Mcp-Method: {method}"]
    else:
        headers += ["MCP-Protocol-Version: 2025-11-25", f"Mcp-Session-Id: {session}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


async def open_session(port: int) -> str:
    """A 2025-11-25 session: initialize, read the Mcp-Session-Id, send notifications/initialized."""
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        }
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    response = await reader.read()
    writer.close()
    for line in response.split(b"\r\n"):
        if line.lower().startswith(b"mcp-session-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise RuntimeError(f"no session id in {response[:300]!r}")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(port: int, eras: list[str], calls: int) -> None:
    print(f"{'era':>5} {'method':>16} {'p50 ms':>8} {'p99 ms':>8} {'items':>6} {'bytes':>9}")
    for era in eras:
        session = await open_session(port) if era == "2025" else None
        for method in METHODS:
            client = RawClient(port, request_bytes(port, method, era, session))
            await client.connect()
            body = b""
            for _ in range(20):  # warm-up: the key's view is built once per catalogue version
                body = await client.call()
            latencies = []
            for _ in range(calls):
                started = time.perf_counter()
                await client.call()
                latencies.append(time.perf_counter() - started)
            await client.close()
            result = orjson.loads(body)["result"]
            items = len(result[method.split("/")[0]])
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            print(f"{era:>5} {method:>16} {p50:8.3f} {p99:8.3f} {items:>6} {len(body):>9}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstreams", type=int, default=50)
    parser.add_argument("--tools", type=int, default=20, help="tools per upstream")
    parser.add_argument("--calls", type=int, default=300, help="requests per list and era")
    parser.add_argument("--era", nargs="+", choices=["2026", "2025"], default=["2026", "2025"])
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mcp-lists-bench-"))
    (workdir / "upstream.py").write_text(UPSTREAM)
    port = free_port()
    names = [f"up{i:02d}" for i in range(args.upstreams)]
    servers = [
        {
            "name": name,
            "command": sys.executable,
            "args": [str(workdir / "upstream.py"), name, str(args.tools)],
        }
        for name in names
    ]
    config = {
        "gateway": {"port": port, "database_url": f"sqlite:///{workdir / 'audit.db'}"},
        "virtual_keys": [{"id": "bench", "secret_env": "BENCH_KEY"}],
        "mcp": {"servers": servers, "virtual_key_permissions": {"bench": names}, "startup_wait_seconds": 60},
    }
    (workdir / "gateway.yaml").write_text(orjson.dumps(config).decode())
    env = {**os.environ, "BENCH_KEY": KEY, "PYTHONPATH": str(ROOT)}
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
    try:
        wait_ready(port, gateway)
        pin(gateway.pid, 0)
        for child in children(gateway.pid):
            pin(child, 0)
        pin(os.getpid(), 1)
        print(
            f"{args.upstreams} stdio upstreams x {args.tools} tools "
            "(+4 resources, 1 template, 2 prompts each); "
            f"one key sees them all; one client, {args.calls} requests per list; logs in {workdir}"
        )
        asyncio.run(measure(port, args.era, args.calls))
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()


if __name__ == "__main__":
    main()
