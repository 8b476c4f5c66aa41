"""The stdio transport: an upstream MCP server as our child process, newline-delimited
JSON over its stdin and stdout.

One reader task hands every line to the session (which multiplexes requests by id,
so concurrent calls never wait for each other); each message is written whole in
one ``write``, so writes never interleave. The child runs in its own session
(Ctrl+C in the gateway's terminal does not kill it behind our back); on close it
gets EOF on stdin, then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import deque
from typing import Any

import orjson

from mcp_gateway.upstream.base import JsonObject, UpstreamError, UpstreamUnreachable
from mcp_gateway.upstream.pending import PendingCall
from mcp_gateway.upstream.session import JsonRpcSession, MessageTransport
from policies.servers import StdioServerConfig

logger = logging.getLogger("mcp_gateway.upstream")

_SAFE_ENV = (
    "HOME",
    "LANG",
    "LC_ALL",
    "LOGNAME",
    "PATH",
    "SHELL",
    "TERM",
    "TMPDIR",
    "TZ",
    "USER",
    "VIRTUAL_ENV",
)
_LINE_LIMIT = 64 * 1024 * 1024
_STDERR_TAIL = 20


def child_environment(config: StdioServerConfig) -> dict[str, str]:
    """The child's environment: a safe base (or everything, if asked) plus the configured variables.

    The directory of the gateway's own interpreter comes first on PATH, so ``command: python``
    runs the Python the gateway runs on (its virtualenv), whether or not that is activated.
    """
    if config.inherit_env:
        env = dict(os.environ)
    else:
        env = {name: os.environ[name] for name in _SAFE_ENV if name in os.environ}
    interpreter_dir = os.path.dirname(sys.executable)
    path = env.get("PATH", os.defpath).split(os.pathsep)
    env["PATH"] = os.pathsep.join([interpreter_dir, *(p for p in path if p != interpreter_dir)])
    env.update(config.env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class StdioTransport(MessageTransport):
    inline_replies = False

    def __init__(self, config: StdioServerConfig) -> None:
        self.config = config
        self.server = config.name
        self._session: JsonRpcSession | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def status(self) -> JsonObject:
        return {"pid": self.pid}

    async def open(self, session: JsonRpcSession, timeout: float) -> None:
        self._session = session
        args = self.config.args
        try:
            self._process = await asyncio.create_subprocess_exec(
                self.config.command,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_environment(self.config),
                cwd=self.config.cwd,
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            raise UpstreamError(f"cannot start {self.config.command!r}: {exc.strerror or exc}") from exc
        self._tasks = [
            asyncio.create_task(self._read_stdout(session), name=f"upstream-{self.server}-stdout"),
            asyncio.create_task(self._read_stderr(), name=f"upstream-{self.server}-stderr"),
        ]

    async def send_request(
        self, message: JsonObject, call: PendingCall, *, modern: bool, headers: dict[str, str] | None
    ) -> None:
        await self.send(message)

    async def listen(self, subscribe: JsonObject | None) -> None:
        """Nothing to open: the one reader already receives everything the child sends."""

    async def send(self, message: JsonObject) -> None:
        process, session = self._process, self._session
        if process is None or process.stdin is None or session is None:
            raise UpstreamUnreachable("not connected")
        if session.is_closed:
            raise UpstreamUnreachable(session.closed_reason or "not connected")
        try:
            process.stdin.write(orjson.dumps(message) + b"\n")
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The child stopped reading: it is gone, and cannot act on a message it never read.
            session.connection_lost(f"stdin closed: {exc}")
            raise UpstreamUnreachable(session.closed_reason or "stdin closed") from exc

    async def _read_stdout(self, session: JsonRpcSession) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        reason = "stdout closed"
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                if line.strip():
                    message = self._parse(line)
                    if message is not None:
                        await session.receive(message, None)
        except (ValueError, asyncio.LimitOverrunError) as exc:
            reason = f"unreadable output: {exc}"
        finally:
            code = await self._exit_code()
            detail = f"process exited with code {code}" if code is not None else reason
            if self.stderr_tail:
                detail += f"; last stderr: {self.stderr_tail[-1]}"
            session.connection_lost(detail)

    def _parse(self, line: bytes) -> JsonObject | None:
        try:
            message: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            logger.warning("[%s] ignored a line that is not JSON: %.200r", self.server, line)
            return None
        return message if isinstance(message, dict) else None

    async def _exit_code(self) -> int | None:
        if self._process is None:
            return None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                return await self._process.wait()
        return None

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        stderr = self._process.stderr
        with contextlib.suppress(ValueError, asyncio.LimitOverrunError):
            while line := await stderr.readline():
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    self.stderr_tail.append(text)
                    logger.info("[%s] %s", self.server, text)

    async def close(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    process.stdin.close()
            if not await self._exited_within(process, 2.0):
                self._signal_group(process, signal.SIGTERM)
                if not await self._exited_within(process, 3.0):
                    self._signal_group(process, signal.SIGKILL)
                    await process.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @staticmethod
    async def _exited_within(process: asyncio.subprocess.Process, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await process.wait()
            return True
        except TimeoutError:
            return False

    @staticmethod
    def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
