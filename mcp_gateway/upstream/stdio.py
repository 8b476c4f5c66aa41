"""An upstream MCP server running as our child process, spoken to over stdin/stdout.

Requests are multiplexed by id over the one pipe, so concurrent calls never wait
for each other. The child runs in its own session (Ctrl+C in the gateway's
terminal does not kill it behind our back); on close it gets EOF on stdin,
then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections import deque
from typing import Any

import orjson

from mcp_gateway.upstream.base import (
    JsonObject,
    NotificationHandler,
    UpstreamClosed,
    UpstreamConnection,
    UpstreamError,
    UpstreamRequestTimeout,
    UpstreamUnreachable,
    initialize_params,
)
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


class StdioConnection(UpstreamConnection):
    def __init__(self, config: StdioServerConfig) -> None:
        super().__init__(config.name)
        self.config = config
        self._process: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[JsonObject]] = {}
        self._progress_routes: dict[str | int, asyncio.Queue[JsonObject]] = {}
        """Per-call queues of progress notifications: relayed by each caller's own task, so a slow
        client never stalls the one reader this upstream's other calls depend on."""
        self._tasks: list[asyncio.Task[None]] = []
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def open(self, timeout: float) -> None:
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
            asyncio.create_task(self._read_stdout(), name=f"upstream-{self.server}-stdout"),
            asyncio.create_task(self._read_stderr(), name=f"upstream-{self.server}-stderr"),
        ]
        init = await self.request("initialize", initialize_params(), timeout=timeout)
        if "error" in init:
            raise UpstreamError(f"initialize failed: {init['error'].get('message')}")
        result = init.get("result") or {}
        self.protocol_version = str(result.get("protocolVersion", self.protocol_version))
        self.server_info = result.get("serverInfo") or {}
        self.capabilities = result.get("capabilities") or {}
        self.instructions = result.get("instructions")
        await self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _write(self, message: JsonObject) -> None:
        process = self._process
        if process is None or process.stdin is None or self.is_closed:
            raise UpstreamUnreachable(self.closed_reason or "not connected")
        try:
            process.stdin.write(orjson.dumps(message) + b"\n")
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The child stopped reading: it is gone, and cannot act on a message it never read.
            self._fail_all(f"stdin closed: {exc}")
            raise UpstreamUnreachable(self.closed_reason or "stdin closed") from exc

    async def request(
        self,
        method: str,
        params: JsonObject | None,
        *,
        timeout: float | None,
        on_notification: NotificationHandler | None = None,
        headers: dict[str, str] | None = None,
    ) -> JsonObject:
        request_id = next(self._ids)
        future: asyncio.Future[JsonObject] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message: JsonObject = {"jsonrpc": "2.0", "id": request_id, "method": method}
        progress: asyncio.Queue[JsonObject] | None = None
        if on_notification is not None:
            params = dict(params or {})
            meta = dict(params.get("_meta") or {})
            meta["progressToken"] = request_id
            params["_meta"] = meta
            progress = self._progress_routes[request_id] = asyncio.Queue()
        if params is not None:
            message["params"] = params
        try:
            await self._write(message)
            async with asyncio.timeout(timeout):
                if progress is None or on_notification is None:
                    return await future
                return await self._await_with_progress(future, progress, on_notification)
        except TimeoutError:
            self._cancel_upstream(request_id, "timed out in the gateway")
            raise UpstreamRequestTimeout(f"no answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            self._cancel_upstream(request_id, "cancelled by the client")
            raise
        finally:
            self._pending.pop(request_id, None)
            self._progress_routes.pop(request_id, None)

    @staticmethod
    async def _await_with_progress(
        future: asyncio.Future[JsonObject], progress: asyncio.Queue[JsonObject], relay: NotificationHandler
    ) -> JsonObject:
        """Relay progress in arrival order until the response is in (then what was queued before it)."""
        while not future.done():
            getter = asyncio.ensure_future(progress.get())
            try:
                await asyncio.wait({future, getter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                await relay(getter.result())
        while not progress.empty():
            await relay(progress.get_nowait())
        return future.result()

    def _cancel_upstream(self, request_id: int, reason: str) -> None:
        if self.is_closed:
            return
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": reason},
        }
        task = asyncio.get_running_loop().create_task(self._write_quietly(note))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _write_quietly(self, message: JsonObject) -> None:
        with contextlib.suppress(UpstreamError):
            await self._write(message)

    async def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        reason = "stdout closed"
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                if line.strip():
                    await self._dispatch(line)
        except (ValueError, asyncio.LimitOverrunError) as exc:
            reason = f"unreadable output: {exc}"
        finally:
            code = await self._exit_code()
            detail = f"process exited with code {code}" if code is not None else reason
            if self.stderr_tail:
                detail += f"; last stderr: {self.stderr_tail[-1]}"
            self._fail_all(detail)

    async def _exit_code(self) -> int | None:
        if self._process is None:
            return None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                return await self._process.wait()
        return None

    async def _dispatch(self, line: bytes) -> None:
        try:
            message: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            logger.warning("[%s] ignored a line that is not JSON: %.200r", self.server, line)
            return
        if not isinstance(message, dict):
            return
        if "method" not in message:
            request_id = message.get("id")
            future = self._pending.get(request_id) if isinstance(request_id, int) else None
            if future is not None and not future.done():
                future.set_result(message)
            return
        if "id" in message:
            await self._answer_server_request(message)
            return
        method = message["method"]
        params = message.get("params") or {}
        if method == "notifications/progress":
            token = params.get("progressToken")
            queue = self._progress_routes.get(token) if isinstance(token, str | int) else None
            if queue is not None:
                queue.put_nowait(message)
            return
        if self.on_notification is not None:
            self.on_notification(message)

    async def _answer_server_request(self, message: JsonObject) -> None:
        """Requests from the server to us: answer ping, refuse what this client did not declare."""
        if message["method"] == "ping":
            reply: JsonObject = {"jsonrpc": "2.0", "id": message["id"], "result": {}}
        else:
            reply = {
                "jsonrpc": "2.0",
                "id": message["id"],
                "error": {"code": -32601, "message": f"the gateway does not offer {message['method']}"},
            }
        with contextlib.suppress(UpstreamError):
            await self._write(reply)

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        stderr = self._process.stderr
        with contextlib.suppress(ValueError, asyncio.LimitOverrunError):
            while line := await stderr.readline():
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    self.stderr_tail.append(text)
                    logger.info("[%s] %s", self.server, text)

    def _fail_all(self, reason: str) -> None:
        self._mark_closed(reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(UpstreamClosed(reason))
        self._pending.clear()

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
        self._fail_all(self.closed_reason or "closed by the gateway")
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
