"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(pid: int, core: int) -> None:
    """Keep a process on one core (when there are two or more), so load and servers do not mix."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {core})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(
    port: int, proc: subprocess.Popen[bytes], path: str = "/readyz", want: bytes = b" 200 "
) -> None:
    """Poll ``GET path`` until the answer contains ``want``; exit if ``proc`` dies or 30 s pass."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                if want in sock.recv(65536):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"nothing ready on port {port}")


def start_mock_model_api(port: int, *flags: str) -> subprocess.Popen[bytes]:
    """examples/servers/mock_model_api.py on ``port`` (pinned to core 0), once it answers ``GET /``."""
    mock = subprocess.Popen(
        [sys.executable, "-m", "examples.servers.mock_model_api", "--port", str(port), *flags],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pin(mock.pid, 0)
    wait_ready(port, mock, "/")
    return mock


def stop(*procs: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM each process, then SIGKILL whichever is still there after ``timeout``."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.terminate()
    for proc in procs:
        if proc is None:
            continue
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class ProcSample:
    """Resident memory and open file descriptors of one process (Linux /proc)."""

    rss: int
    fds: int

    def __add__(self, other: ProcSample) -> ProcSample:
        return ProcSample(self.rss + other.rss, self.fds + other.fds)


def proc_sample(pid: int) -> ProcSample | None:
    """None when the process is gone."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError, ValueError):
        return None
    return ProcSample(pages * os.sysconf("SC_PAGE_SIZE"), fds)


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (by parent pid, scanning /proc: not every kernel has ``children``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return sorted(found)


@dataclass(frozen=True)
class Sockets:
    """A process's TCP sockets: connections accepted on its port, the others, and CLOSE_WAIT ones."""

    inbound: int
    outbound: int
    close_wait: int
    """Closed by the peer but never by this process: the signature of a leaked socket."""
    total: int
    """Every TCP socket of the process, listening ones included."""


def tcp_sockets(pid: int, port: int) -> Sockets:
    """Classify a process's TCP sockets (Linux /proc/<pid>/fd and /proc/<pid>/net/tcp*).

    A server's fd count rises and falls with the keep-alive connections its clients and its own
    upstream pools hold open; those are counted apart from the rest before anything is called a leak.
    """
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    inbound = outbound = close_wait = total = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] not in inodes:
                    continue
                total += 1
                state = fields[3]
                if state == "08":
                    close_wait += 1
                elif state != "0A":
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inbound += 1
                    else:
                        outbound += 1
    return Sockets(inbound, outbound, close_wait, total)


def other_fds(pid: int) -> Counter[str]:
    """A process's fds that are not sockets, by target (a file's name, ``pipe``, ``eventpoll``...)."""
    found: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("anon_inode:"):
                    found[link.removeprefix("anon_inode:").strip("[]")] += 1
                elif not link.startswith("socket:["):
                    found[link.split(":[", 1)[0].rsplit("/", 1)[-1]] += 1
    return found


BENCH_PREFIX = f"mcpgw-bench-{os.getpid()}:"
"""Where a benchmark's gateway keeps its counters in Redis (``counters.key_prefix``)."""


@contextlib.contextmanager
def redis_for(spec: str | None) -> Iterator[str | None]:
    """The Redis a benchmark's ``--redis`` names: a URL as given, or ``own`` / ``own:CORE`` for a
    private ``redis-server`` on a free port (nothing saved to disk), pinned to CORE when given,
    stopped at the end. Where Redis runs next to the gateway changes what a round trip costs."""
    if spec is None:
        yield spec
        return
    if not spec.startswith("own"):
        try:
            yield spec
        finally:  # a shared Redis: leave nothing behind (budget counters are kept for 40 days)
            import redis

            with redis.Redis.from_url(spec) as client:
                for key in client.scan_iter(match=f"{BENCH_PREFIX}*"):
                    client.delete(key)
        return
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        if ":" in spec:
            pin(server.pid, int(spec.split(":", 1)[1]))
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(server)
