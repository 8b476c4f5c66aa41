"""tools/call through two checkouts of the gateway at once, their rounds interleaved with direct ones.

    python benchmarks/compare_trees.py A B [--rounds 60] [--calls 100] [--uncounted] [--pin-all]

A and B are two source trees (``git worktree add /tmp/base <rev>`` makes one), e.g. main and a
change, or the first release (52cf063) and main. One upstream (the mcp SDK server of
`mcp_tools_call`) serves a gateway started from each tree; one client runs rounds of calls direct,
through A and through B in turn, rotating the order, so the three see the same machine at the
same moments. Alternating whole runs instead compares two moments of a noisy machine: on the 2-core
VM of 2026-12-02 the added p50 of one tree moved by 0.3 ms between runs, while A against itself
here differs by 0.04 ms at p50 and about 0.2 ms at p99.

Prints p10/p50/p90/p99 of each and the gateway's CPU per call, the latency each gateway adds over
direct, and B - A. Trees that still serve as ``python -m mcp_gateway`` (before the composition
root moved to ``gateway_app``) work too. ``--pin-all`` pins every process of each gateway (the
writer process included) to the servers' core; by default only the gateway and its direct
children are pinned, as in `mcp_tools_call`. Timing lives here, never in a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from _support import cpu_seconds, free_port, pin
from mcp_tools_call import (
    KEY,
    UPSTREAM,
    RawClient,
    Samples,
    children,
    request_bytes,
    run_round,
    wait_http,
    wait_http_port_open,
)

QUANTILES = (0.1, 0.5, 0.9, 0.99)


def start_gateway(
    tree: Path, workdir: Path, name: str, upstream_port: int, counted: bool
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    key: dict[str, object] = {"id": "bench", "secret_env": "BENCH_KEY"}
    if counted:
        key["rate_limit"] = {"tool_calls_per_minute": 10_000_000}
    policy = {
        "gateway": {"port": port, "database_url": f"sqlite:///{workdir / f'{name}.db'}"},
        "virtual_keys": [key],
        "mcp": {
            "servers": [{"name": "bench", "url": f"http://127.0.0.1:{upstream_port}/mcp"}],
            "virtual_key_permissions": {"bench": "*"},
        },
    }
    config = workdir / f"{name}.yaml"
    config.write_text(orjson.dumps(policy).decode())
    module = "gateway_app" if (tree / "gateway_app").is_dir() else "mcp_gateway"
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "serve", "--config", str(config), "--log-level", "warning"],
        cwd=workdir,
        env={**os.environ, "BENCH_KEY": KEY, "PYTHONPATH": str(tree)},
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{name}.log").open("wb"),
    )
    wait_http(port, "/readyz")
    return proc, port


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def pin_process(pid: int, core: int) -> None:
    """Every thread of ``pid`` (affinity is per thread; a process's own call sets its main one)."""
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in threads:
        pin(tid, core)


async def measure(
    upstream_port: int, gateways: dict[str, tuple[int, int]], rounds: int, calls: int
) -> dict[str, Samples]:
    clients = {"direct": RawClient(upstream_port, request_bytes(upstream_port, "echo", None))}
    for name, (port, _) in gateways.items():
        clients[name] = RawClient(port, request_bytes(port, "bench__echo", f"Bearer {KEY}"))
    for client in clients.values():
        await client.connect()
    for client in clients.values():  # warm-up: connections, caches, first-call costs
        await run_round([client], 50, Samples())
    samples = {name: Samples() for name in clients}
    order = list(clients)
    for _ in range(rounds):
        order = order[1:] + order[:1]
        for name in order:
            pid = gateways[name][1] if name in gateways else None
            before = cpu_seconds(pid) if pid is not None else 0.0
            await run_round([clients[name]], calls, samples[name])
            if pid is not None:
                samples[name].cpu += cpu_seconds(pid) - before
    for client in clients.values():
        await client.close()
    return samples


def report(samples: dict[str, Samples]) -> None:
    direct = samples["direct"]
    header = " ".join(f"{'p' + str(round(q * 100)):>7}" for q in QUANTILES)
    print(f"{'':10} {header}   CPU/call ms")
    print(f"{'direct':10} " + " ".join(f"{direct.p(q):7.3f}" for q in QUANTILES))
    for name in ("A", "B"):
        through = samples[name]
        added = " ".join(f"{through.p(q) - direct.p(q):+7.3f}" for q in QUANTILES)
        print(f"{name + ' added':10} {added}   {through.cpu / through.calls * 1000:.3f}")
    a, b = samples["A"], samples["B"]
    print(f"{'B - A':10} " + " ".join(f"{b.p(q) - a.p(q):+7.3f}" for q in QUANTILES))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path, help="a source tree of the gateway")
    parser.add_argument("b", type=Path, help="another one")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=100, help="calls per round, one client")
    parser.add_argument(
        "--uncounted", action="store_true", help="no tool_calls_per_minute limit (the first release had none)"
    )
    parser.add_argument(
        "--pin-all", action="store_true", help="pin the writer process (and every thread) too"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="compare-trees-"))
    (workdir / "upstream.py").write_text(UPSTREAM)
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(workdir / "upstream.py"), str(upstream_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs: list[subprocess.Popen[bytes]] = [upstream]
    try:
        wait_http_port_open(upstream_port)
        gateways: dict[str, tuple[int, int]] = {}
        for name, tree in (("A", args.a), ("B", args.b)):
            proc, port = start_gateway(tree.resolve(), workdir, name, upstream_port, not args.uncounted)
            procs.append(proc)
            gateways[name] = (port, proc.pid)
        for proc in procs:
            if args.pin_all:
                pin_process(proc.pid, 0)
            else:
                pin(proc.pid, 0)
            for pid in descendants(proc.pid) if args.pin_all else children(proc.pid):
                pin_process(pid, 0)
        pin(os.getpid(), 1)
        print(f"A: {args.a}\nB: {args.b}\n{args.rounds} rounds x {args.calls} calls each, one client")
        report(asyncio.run(measure(upstream_port, gateways, args.rounds, args.calls)))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
