"""Which HTTP client should the model proxy use upstream? HttpPool and httpx against the mock model API.

``HttpPool`` (``gateway_common.http.pool``) is the proxy's upstream client;
``HttpxClient`` (``gateway_common.http.httpx_client``) is the gateway's httpx-based
client, used only for origins behind a proxy or asking for HTTP/2 or custom TLS;
plain ``httpx.AsyncClient`` is the library as the project uses it elsewhere (tests,
webhooks). aiohttp, the proxy's
previous upstream client, is no longer a dependency; ``../shared/notes/hot-path.md``
has the three side by side.

Each client sends the same /v1/messages request (non-streaming and streaming) to the
mock on loopback, at 1 and 32 concurrent requests, interleaved round by round. It
prints p50/p99 latency, requests/s and the client process's CPU per request (the
part a gateway pays on every forwarded request). The mock runs in its own process
pinned to core 0; this process is pinned to core 1 when the machine has two.

    .venv/bin/python benchmarks/llm_proxy_clients.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from _support import free_port, pin

from gateway_common.http import ClientOptions, open_client
from gateway_common.http.pool import HttpPool

REPO = Path(__file__).resolve().parents[1]
BODY = (
    b'{"model":"claude-haiku-4-5","max_tokens":64,'
    b'"messages":[{"role":"user","content":"Say hello in one short sentence, please."}]}'
)
STREAM_BODY = BODY[:-1] + b',"stream":true}'
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": "k"}

Send = Callable[[bytes], Awaitable[None]]


def start_mock(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.servers.mock_model_api", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pin(proc.pid, 0)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mock model API did not start")


async def measure(
    send: Send, body: bytes, concurrency: int, seconds: float
) -> tuple[list[float], float, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    cpu0 = time.process_time()
    wall0 = time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await send(body)
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return latencies, wall, cpu


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pin(os.getpid(), 1)
    port = free_port()
    mock = start_mock(port)
    url = f"http://127.0.0.1:{port}/v1/messages"
    try:
        pool = HttpPool(url, max_connections=256)
        hx = httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        seam = open_client(url, ClientOptions(transport="httpx"), environ={})

        async def httppool_send(body: bytes) -> None:
            async with await pool.request("POST", "/v1/messages", HEADERS, body) as resp:
                while await resp.read_some():
                    pass

        async def httpx_send(body: bytes) -> None:
            async with hx.stream("POST", url, content=body, headers=HEADERS) as resp:
                async for _ in resp.aiter_raw():
                    pass

        async def seam_send(body: bytes) -> None:
            async with await seam.request("POST", "/v1/messages", HEADERS, body) as resp:
                while await resp.read_some():
                    pass

        clients: dict[str, Send] = {"HttpPool": httppool_send, "HttpxClient": seam_send, "httpx": httpx_send}
        results: dict[tuple[str, str, int], list[tuple[list[float], float, float]]] = {}
        for send in clients.values():  # warm up connections
            for _ in range(50):
                await send(BODY)
        for _ in range(args.rounds):
            for mode, body in (("non-stream", BODY), ("stream", STREAM_BODY)):
                for concurrency in (1, 32):
                    for name, send in clients.items():
                        run = await measure(send, body, concurrency, args.seconds)
                        results.setdefault((name, mode, concurrency), []).append(run)
        print(
            f"{'client':11} {'mode':10} {'C':>3} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'CPU/req ms':>10}"
        )
        for (name, mode, concurrency), runs in results.items():
            latencies = [x for run in runs for x in run[0]]
            count = len(latencies)
            wall = sum(run[1] for run in runs)
            cpu = sum(run[2] for run in runs)
            q = statistics.quantiles(latencies, n=100)
            print(
                f"{name:11} {mode:10} {concurrency:>3} {q[49] * 1000:8.3f} {q[98] * 1000:8.3f} "
                f"{count / wall:8.0f} {cpu / count * 1000:10.3f}"
            )
        await pool.aclose()
        await seam.aclose()
        await hx.aclose()
    finally:
        mock.terminate()
        mock.wait(5)


if __name__ == "__main__":
    asyncio.run(main())
