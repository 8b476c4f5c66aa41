"""Soak: mixed traffic at a fixed rate through a real gateway restarted three times; no row may go missing.

    python benchmarks/soak.py [--minutes 10] [--rate 50] [--restarts 3] [--seed 1] [--database-url URL]
                              [--sample-seconds S] [--keep]

Starts the mock model API, an MCP upstream over streamable HTTP and `mcp-gateway serve` (SQLite in a
temporary directory, or ``--database-url``), whose policy adds a stdio upstream (its child); both
upstreams are tests/fixtures/upstream.py. Then starts ``--rate`` requests per second for ``--minutes``
(open loop: the schedule never waits for answers), a seeded mix of the kinds in _soak_traffic.py:
tools/call in both protocol eras (2025-11-25 sessions, 2026-07-28 stateless), tool errors, unknown and
hidden tools, a rate-limited key, slow calls, calls cut by the client after their first progress
event, whole and streamed /v1/messages, streams cut by the client after their first text, OpenAI chat
completions, a model the key may not use, a key whose budget is spent, requests without a valid key.
At 1/4, 2/4 and 3/4 of the run (``--restarts``) the gateway gets SIGTERM while traffic flows, and is
started again once it has exited.

Which requests must have a row (audit: ``tool_calls``, found by the JSON-RPC id; ledger:
``model_requests``, found by the ``x-claude-code-session-id`` header, which the gateway stores): every
request whose response headers came back, except the answers given before anything is dispatched
(401 without a valid key; 404 for a 2025 session that a restarted gateway does not know). A request
refused at connect (the gateway was down) has none, nor has one whose connection closed before any
byte of an answer (it reached a gateway that had stopped reading); both are counted. A cut call has
its row (``cancelled``): the client cuts only once the answer has started. Requests in flight at a
SIGTERM must have theirs: a graceful stop finishes them, then writes every row.

After the last stop it counts this run's rows in the database and the fallback files and prints,
per table, expected against written (PASS when the counts are equal and the requests the same). It
samples the gateway and its children (the stdio upstream) every 2 s and prints, per lifetime, RSS and
open fds at the start of the steady state and at its end. Flat means: RSS grew at most max(4 MiB, 5 %),
fds other than TCP sockets by at most 2 (a changed one is named), at most 2 sockets in CLOSE_WAIT at
the end; TCP connections (clients', and the gateway's pools to its upstreams) come and go with the
load and are shown apart. Exit status 0 only when rows, processes and exits all passed. Not a test:
the figures depend on the machine; samples.csv in a kept work directory has every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml
from _soak_traffic import (
    ERROR,
    KINDS,
    LOST,
    NO_ROW,
    REFUSED,
    ROW,
    TABLES,
    Load,
    gateway_config,
    generate,
    kind_of,
)
from _support import (
    ROOT,
    ProcSample,
    Sockets,
    child_pids,
    free_port,
    other_fds,
    pin,
    proc_sample,
    start_mock_model_api,
    stop,
    tcp_sockets,
    wait_ready,
)
from sqlalchemy import make_url, text

from gateway_app.database import open_database

MIB = 1024 * 1024
FLAT_RSS = (4 * MIB, 0.05)
FLAT_FDS = 2
"""Growth from a lifetime's steady-state start to its end still called flat: RSS max(4 MiB, 5 %); fds
that are not TCP sockets (and at most that many sockets in CLOSE_WAIT at the end)."""


# -- the gateway's lifetimes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float
    gateway: ProcSample
    children: ProcSample
    """Summed over the gateway's children (its stdio upstream)."""
    child_pids: tuple[int, ...]
    sockets: Sockets
    """The gateway's TCP sockets: client and upstream connections come and go with the load."""
    files: Counter[str]
    """The gateway's other fds by what they point at."""


@dataclass
class Lifetime:
    number: int
    proc: subprocess.Popen[bytes]
    ready: float = 0.0
    stopped: float = 0.0
    exited_in: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    in_flight_at_stop: set[str] = field(default_factory=set)


class Gateways:
    """Starts, samples and stops `mcp-gateway serve`, one `Lifetime` per process."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.lifetimes: list[Lifetime] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        """Every process started, ready or not (for the clean-up after a failure)."""
        self.t0 = asyncio.get_running_loop().time()

    def clock(self) -> float:
        return asyncio.get_running_loop().time() - self.t0

    async def start(self) -> Lifetime:
        number = len(self.lifetimes) + 1
        config = str(self.workdir / "gateway.yaml")
        with (self.workdir / f"gateway-{number}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway_app", "serve", "--config", config, "--log-level", "warning"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        pin(proc.pid, 0)
        life = Lifetime(number, proc)
        # Ready: both upstreams answer ("degraded" while one is still starting).
        await asyncio.to_thread(wait_ready, self.port, proc, "/readyz", b'"status":"ready"')
        life.ready = self.clock()
        self.lifetimes.append(life)
        self.sample()
        print(f"[{life.ready:6.1f} s] gateway {number} ready (pid {proc.pid})", flush=True)
        return life

    def sample(self) -> None:
        life = self.lifetimes[-1]
        gateway = proc_sample(life.proc.pid)
        if life.stopped or gateway is None:
            return
        pids = tuple(child_pids(life.proc.pid))
        children = [s for pid in pids if (s := proc_sample(pid)) is not None]
        sockets, files = tcp_sockets(life.proc.pid, self.port), other_fds(life.proc.pid)
        life.samples.append(
            Sample(self.clock(), gateway, sum(children, ProcSample(0, 0)), pids, sockets, files)
        )

    async def sample_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.sample()

    async def stop(self, in_flight: set[str]) -> Lifetime:
        """SIGTERM (while traffic flows); returns once the process has exited."""
        life = self.lifetimes[-1]
        self.sample()
        life.in_flight_at_stop = set(in_flight)
        life.stopped = self.clock()
        life.proc.send_signal(signal.SIGTERM)
        while life.proc.poll() is None:
            await asyncio.sleep(0.02)
        life.exited_in = self.clock() - life.stopped
        print(
            f"[{life.stopped:6.1f} s] SIGTERM to gateway {life.number} with {len(life.in_flight_at_stop)} "
            f"requests in flight: exited ({exit_text(life.proc.returncode)}) {life.exited_in:.2f} s later",
            flush=True,
        )
        return life


def exit_text(code: int | None) -> str:
    # uvicorn re-raises the signal it caught once its graceful shutdown is over.
    return "by its own SIGTERM, after a graceful stop" if code == -signal.SIGTERM else f"status {code}"


async def soak(args: argparse.Namespace, workdir: Path, port: int, run_id: str) -> tuple[Load, Gateways]:
    seconds = args.minutes * 60
    gateways = Gateways(workdir, port)
    load = Load(port, random.Random(args.seed))
    try:
        await gateways.start()
        sampler = asyncio.create_task(gateways.sample_forever(args.sample_seconds or min(2.0, seconds / 160)))
        traffic = asyncio.create_task(generate(load, run_id, seconds, args.rate))
        for cycle in range(1, args.restarts + 1):
            await asyncio.sleep(max(0.0, seconds * cycle / (args.restarts + 1) - gateways.clock()))
            await gateways.stop(load.in_flight)
            await gateways.start()
        left = await traffic
        gateways.sample()
        sampler.cancel()
        await asyncio.wait_for(asyncio.gather(*left), 120)
        await gateways.stop(set())  # no traffic left: flush and stop
    finally:
        await asyncio.to_thread(stop, *gateways.procs)  # only still-running ones, after a failure
        await load.mcp.aclose()
        await load.model.aclose()
    return load, gateways


# -- counting and the report -----------------------------------------------------------------------


@dataclass
class Written:
    rows: Counter[str] = field(default_factory=Counter)
    """Rows per request tag (more than one would be a duplicate)."""
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(kind, status) -> rows."""
    from_file: int = 0


def written_rows(url: str, workdir: Path, run_id: str) -> dict[str, Written]:
    """This run's rows per table, in the database and in the fallback file (not replayed yet)."""
    found = {table: Written() for table in TABLES}
    engine = open_database(url)
    try:
        with engine.connect() as conn:
            for table, (name, column) in TABLES.items():
                query = text(f"SELECT {column}, status FROM {name} WHERE {column} LIKE :prefix")
                for tag, status in conn.execute(query, {"prefix": f"{run_id}-%"}):
                    found[table].rows[tag] += 1
                    found[table].statuses[kind_of(tag), status] += 1
    finally:
        engine.dispose()
    for table, (_, column) in TABLES.items():
        fallback = workdir / f"{table}-fallback.jsonl"
        for line in fallback.read_bytes().splitlines() if fallback.exists() else []:
            row = orjson.loads(line)
            tag = str(row.get(column) or "")
            if tag.startswith(f"{run_id}-"):
                found[table].rows[tag] += 1
                found[table].statuses[kind_of(tag), str(row.get("status"))] += 1
                found[table].from_file += 1
    return found


def report_rows(load: Load, gateways: Gateways, written: dict[str, Written]) -> bool:
    print(
        f"\n{'kind':14} {'what':30} {'sent':>5} {'refused':>7} {'lost':>4} {'no row':>6} {'error':>5} "
        f"{'row due':>7} {'written':>7}  statuses written"
    )
    for kind, (table, _, what) in KINDS.items():
        outcomes = Counter(o for tag, o in load.outcome.items() if kind_of(tag) == kind)
        found = written[table]
        statuses = sorted((s, n) for (k, s), n in found.statuses.items() if k == kind)
        rows = sum(n for _, n in statuses)
        print(
            f"{kind:14} {what:30} {outcomes.total():5} {outcomes[REFUSED]:7} {outcomes[LOST]:4} "
            f"{outcomes[NO_ROW]:6} {outcomes[ERROR]:5} {outcomes[ROW]:7} {rows:7}  "
            + ", ".join(f"{s} {n}" for s, n in statuses)
        )
    for error, count in load.errors.most_common(10):
        print(f"    error x{count}: {error}")
    passed = True
    print()
    for table, (name, _) in TABLES.items():
        found = written[table]
        expected = {t for t, o in load.outcome.items() if o == ROW and KINDS[kind_of(t)][0] == table}
        missing = expected - found.rows.keys()
        extra = {t: load.outcome.get(t, "never sent") for t in found.rows if t not in expected}
        total = found.rows.total()
        ok = total == len(expected) and not missing and not extra
        passed &= ok
        print(
            f"{table:6} ({name}): expected {len(expected)}, written {total} "
            f"({total - found.from_file} in the database, {found.from_file} in the fallback file); "
            f"missing {len(missing)}, unexpected {len(extra)}, "
            f"duplicates {total - len(found.rows)}: {'PASS' if ok else 'FAIL'}"
        )
        for tag in sorted(missing)[:10]:
            print(f"    missing: {tag}")
        for tag, seen in sorted(extra.items())[:10]:
            print(f"    unexpected row: {tag} (the client saw: {seen})")
    for life in gateways.lifetimes[:-1]:
        due = {t for t in life.in_flight_at_stop if load.outcome.get(t) == ROW}
        with_row = {t for t in due if t in written[KINDS[kind_of(t)][0]].rows}
        others = Counter(load.outcome.get(t) for t in life.in_flight_at_stop - due)
        print(
            f"in flight at SIGTERM {life.number}: {len(life.in_flight_at_stop)} requests, {len(due)} "
            f"answered, {len(with_row)} of them with a row; the others: {dict(others) or 'none'}"
        )
    return passed


def median(values: list[int]) -> int:
    return int(statistics.median(values))


@dataclass(frozen=True)
class Figures:
    """Medians over a window of samples, for the gateway or its children."""

    rss: int
    fds: int
    other_fds: int
    """Fds that are not TCP sockets: files, pipes, the event loop's: constant unless something leaks."""
    connections: str
    close_wait: int

    @classmethod
    def of(cls, samples: list[Sample], part: str) -> Figures:
        if part == "children":
            rss, fds = median([s.children.rss for s in samples]), median([s.children.fds for s in samples])
            return cls(rss, fds, fds, "", 0)
        inbound, outbound = (
            median([s.sockets.inbound for s in samples]),
            median([s.sockets.outbound for s in samples]),
        )
        return cls(
            median([s.gateway.rss for s in samples]),
            median([s.gateway.fds for s in samples]),
            median([s.gateway.fds - s.sockets.total for s in samples]),
            f"{inbound}+{outbound}",
            median([s.sockets.close_wait for s in samples]),
        )

    def cell(self) -> str:
        return f"{self.rss / MIB:5.1f}/{self.fds:>3} {self.connections:>5}"


def report_processes(gateways: Gateways) -> bool:
    print(
        f"\nRSS MiB/open fds and TCP connections (accepted+outbound), at ready and as medians over a window "
        f"when the steady state starts (after 20 % of the lifetime, at most 30 s) and before the end. Flat: "
        f"RSS grows at most max({FLAT_RSS[0] // MIB} MiB, {FLAT_RSS[1]:.0%}), fds other than TCP sockets at "
        f"most {FLAT_FDS}, at most {FLAT_FDS} sockets in CLOSE_WAIT at the end"
    )
    heads = ("life", "pid", "window s", "at ready", "start", "end", "growth")
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, (4, 7, 11, 15, 15, 15, 12), strict=True)), " process")
    all_flat = True
    for life in gateways.lifetimes:
        samples = life.samples
        span = samples[-1].at - life.ready
        warm, window = life.ready + min(30.0, 0.2 * span), min(10.0, 0.1 * span)
        first = [s for s in samples if warm <= s.at <= warm + window]
        first = first or [min(samples, key=lambda s: abs(s.at - warm))]
        last = [s for s in samples if s.at >= samples[-1].at - window]
        steady = [s for s in samples if s.at >= warm]
        restarts = len({s.child_pids for s in samples}) - 1
        for part in ("gateway", "children"):
            ready, start, end = Figures.of(samples[:1], part), Figures.of(first, part), Figures.of(last, part)
            is_flat = (
                end.rss - start.rss <= max(FLAT_RSS[0], FLAT_RSS[1] * start.rss)
                and end.other_fds - start.other_fds <= FLAT_FDS
                and end.close_wait <= FLAT_FDS
            )
            all_flat &= is_flat
            trend = 0.0
            if len(steady) > 2:
                rss = [getattr(s, part).rss / MIB for s in steady]
                trend = statistics.linear_regression([s.at for s in steady], rss).slope * 60
            label = (
                f"gateway, {end.close_wait} CLOSE_WAIT"
                if part == "gateway"
                else f"children {samples[0].child_pids}"
            )
            label += f", RSS trend {trend:+.2f} MiB/min"
            if part == "children" and restarts:
                label += f", restarted {restarts} times"
            print(
                f"{life.number:>4} {life.proc.pid:>7} {first[0].at:5.0f}-{last[-1].at:<5.0f} "
                f"{ready.cell()} {start.cell()} {end.cell()} "
                f"{(end.rss - start.rss) / MIB:+5.1f}/{end.other_fds - start.other_fds:<+5} "
                f"{label}{'' if is_flat else '  GROWS'}"
            )
            added, gone = last[-1].files - first[0].files, first[0].files - last[-1].files
            if part == "gateway" and (added or gone):
                changes = [*(f"+{n} {k}" for k, n in added.items()), *(f"-{n} {k}" for k, n in gone.items())]
                span_text = f"{first[0].at:.0f} s to {last[-1].at:.0f} s"
                print(f"{'':25} fds other than sockets, {span_text}: {', '.join(changes)}")
    return all_flat


def write_samples(gateways: Gateways, path: Path) -> None:
    """Every sample, for a closer look (kept with the work directory)."""
    lines = ["lifetime,seconds,rss,fds,inbound,outbound,close_wait,tcp_sockets,children_rss,children_fds"]
    for life in gateways.lifetimes:
        for s in life.samples:
            g, k = s.sockets, s.children
            lines.append(
                f"{life.number},{s.at:.1f},{s.gateway.rss},{s.gateway.fds},"
                f"{g.inbound},{g.outbound},{g.close_wait},{g.total},{k.rss},{k.fds}"
            )
    path.write_text("\n".join(lines) + "\n")


def log_problems(workdir: Path) -> list[str]:
    return [
        f"{log.name}: {line[:200]}"
        for log in sorted(workdir.glob("gateway-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if any(word in line for word in ("ERROR", "CRITICAL", "Traceback"))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run")
    parser.add_argument("--restarts", type=int, default=3, help="SIGTERM-and-restart cycles, evenly spread")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second, all kinds together")
    parser.add_argument("--seed", type=int, default=1, help="seeds the mix of request kinds")
    parser.add_argument(
        "--database-url",
        help="the gateway's database (default: SQLite in the work directory); an existing one is fine: "
        "only this run's rows are counted",
    )
    parser.add_argument(
        "--sample-seconds", type=float, help="RSS and fd sampling (default: 2 s, less if short)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite file)")
    args = parser.parse_args()
    pin(os.getpid(), 1)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    run_id = f"soak{secrets.token_hex(3)}"
    url = args.database_url or f"sqlite:///{workdir / 'gateway.db'}"
    port, http_port, mock_port = free_port(), free_port(), free_port()
    (workdir / "gateway.yaml").write_text(
        yaml.safe_dump(gateway_config(workdir, port, http_port, mock_port, url))
    )
    mock = upstream = None
    passed = False
    try:
        mock = start_mock_model_api(mock_port, "--reply-words", "20", "--chunk-delay-ms", "25")
        upstream = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures.upstream", "--name", "http", "--http", str(http_port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pin(upstream.pid, 0)
        wait_ready(http_port, upstream, "/mcp", b"HTTP/1.1")
        print(
            f"soak {run_id}: {args.minutes:g} min at {args.rate:g} requests/s (seed {args.seed}), "
            f"{args.restarts} SIGTERM-and-restart cycles; load average {os.getloadavg()[0]:.2f}; database "
            f"{make_url(url).render_as_string(hide_password=True)}; work directory {workdir}",
            flush=True,
        )
        load, gateways = asyncio.run(soak(args, workdir, port, run_id))
        rows_ok = report_rows(load, gateways, written_rows(url, workdir, run_id))
        flat_ok = report_processes(gateways)
        write_samples(gateways, workdir / "samples.csv")
        problems = log_problems(workdir)
        print(f"\ngateway logs: {len(problems)} ERROR/CRITICAL/Traceback lines")
        for line in problems[:10]:
            print(f"    {line}")
        exits = [life.proc.returncode for life in gateways.lifetimes]
        clean = all(code in (0, -signal.SIGTERM) for code in exits)
        passed = rows_ok and flat_ok and clean
        print(
            f"rows: {'PASS' if rows_ok else 'FAIL'}; processes flat: {'yes' if flat_ok else 'NO'}; "
            f"graceful exits: {'yes' if clean else exits}; load average {os.getloadavg()[0]:.2f}\n"
            f"RESULT: {'PASS' if passed else 'FAIL'}"
        )
    finally:
        stop(mock, upstream)
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}")
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
