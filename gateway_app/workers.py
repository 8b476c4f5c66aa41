"""``serve --workers N``: N gateway processes on one port, for a machine with more than one core.

One Python process serves on one core. The supervisor (the process ``serve`` started
as) binds N listening sockets to the same address with ``SO_REUSEPORT`` (the kernel
spreads new connections evenly across them), then forks N workers before it has an
event loop or a thread. Each worker is a whole gateway: its own app, upstream
connections, database engine and writers; it serves on its own socket. What the
workers share goes through Redis: the counters (``counters.backend: redis``), and
the change bus (key changes, policy reloads, ended sessions), and a session opened on
one worker is served by any (``gateway.session_secret_env``). Without those, N workers
would each count limits alone (N times the limit) or refuse each other's sessions,
so ``serve`` refuses N > 1 and names the setting (`workers_refusal`).

The supervisor forwards SIGTERM and SIGINT to every worker and waits for them (each
drains and flushes as a single ``serve`` does); SIGHUP goes to one worker, whose
reload reaches the others through the change bus. A worker that dies is started again
after `RESTART_DELAY` seconds; one that keeps dying at start (`CRASH_LOOP` times
within `CRASH_WINDOW` seconds each) stops the whole server. Workers run in a process
group of their own (a terminal's Ctrl+C reaches them once, through the supervisor), and
stop by themselves if the supervisor disappears.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType

from policies import GatewayPolicy

logger = logging.getLogger("mcp_gateway")

RESTART_DELAY = 1.0
CRASH_WINDOW = 10.0
CRASH_LOOP = 3
BACKLOG = 2048

Serve = Callable[[socket.socket, int], None]
"""Runs one worker's gateway on a bound, listening socket (its index given) until it stops."""


def workers_refusal(policy: GatewayPolicy, workers: int, environ: Mapping[str, str]) -> str | None:
    """Why ``serve --workers`` may not run this many workers under ``policy`` (None: it may)."""
    if workers <= 1:
        return None
    if policy.counters.backend != "redis":
        return (
            f"serve --workers {workers} needs counters.backend: redis in the policy (with url): with "
            "'memory' each worker counts rate limits and budgets alone, so every limit would be "
            f"{workers} times too high"
        )
    variable = policy.gateway.session_secret_env
    if variable is None or not environ.get(variable):
        named = f" (${variable} is not set)" if variable else ""
        return (
            f"serve --workers {workers} needs gateway.session_secret_env naming an environment variable "
            f"that holds a secret shared by the workers{named}: without it a 2025-11-25 session works "
            "only on the worker that opened it"
        )
    return None


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address (``SO_REUSEPORT``); port 0 picks one for all."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            address = sock.getsockname()  # the port the first one got, for the others
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Supervisor:
    def __init__(self, sockets: list[socket.socket], serve: Serve) -> None:
        self.sockets = sockets
        self.serve = serve
        self.children: dict[int, int] = {}
        """pid -> worker index."""
        self.started_at: dict[int, float] = {}
        self.quick_deaths = [0] * len(sockets)
        self.stopping = False
        self.status = 0

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.setpgid(0, 0)
                for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(number, signal.SIG_DFL)
                for n, sock in enumerate(self.sockets):
                    if n != index:
                        sock.close()
                _watch_parent(parent)
                self.serve(self.sockets[index], index)
                code = 0
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = index
        self.started_at[index] = time.monotonic()
        logger.info("worker %d started (pid %d)", index, pid)

    def _forward(self, number: int, frame: FrameType | None) -> None:
        if number == signal.SIGHUP:
            if self.children and not self.stopping:
                pid = min(self.children, key=lambda p: self.children[p])
                logger.info(
                    "SIGHUP: worker %d reloads the policy file; the others follow it", self.children[pid]
                )
                _kill(pid, signal.SIGHUP)
            return
        if not self.stopping:
            logger.info("stopping %d workers", len(self.children))
        self.stopping = True
        for pid in list(self.children):
            _kill(pid, signal.SIGTERM)

    def run(self) -> int:
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._forward)
        for index in range(len(self.sockets)):
            self._spawn(index)
        while self.children:
            try:
                pid, raw = os.wait()
            except ChildProcessError:
                break
            if pid not in self.children:
                continue
            index = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(raw)
            if self.stopping:
                logger.info("worker %d (pid %d) stopped", index, pid)
                continue
            self._died(index, pid, code)
        for sock in self.sockets:
            sock.close()
        return self.status

    def _died(self, index: int, pid: int, code: int) -> None:
        quick = time.monotonic() - self.started_at[index] < CRASH_WINDOW
        self.quick_deaths[index] = self.quick_deaths[index] + 1 if quick else 0
        if self.quick_deaths[index] >= CRASH_LOOP:
            logger.error(
                "worker %d ended %d times within %g s of starting (last status %d): stopping the server",
                index,
                CRASH_LOOP,
                CRASH_WINDOW,
                code,
            )
            self.status = 1
            self._forward(signal.SIGTERM, None)
            return
        logger.error("worker %d (pid %d) ended with status %d; starting it again", index, pid, code)
        time.sleep(RESTART_DELAY)
        if not self.stopping:
            self._spawn(index)


def _kill(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def _watch_parent(parent: int) -> None:
    """End this worker (as SIGTERM would) if the supervisor is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def run_workers(host: str, port: int, count: int, serve: Serve) -> int:
    """Serve with ``count`` worker processes until stopped; the exit status."""
    sockets = bind_sockets(host, port, count)
    logger.info("serving on %s:%d with %d worker processes", host, sockets[0].getsockname()[1], count)
    return Supervisor(sockets, serve).run()
