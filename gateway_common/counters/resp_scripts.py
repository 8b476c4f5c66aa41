"""A minimal Redis client for one job: the counter store's Lua scripts (``EVALSHA``), pipelined.

Why it exists: redis-py's asyncio client spends about 85 µs of CPU per ``EVALSHA`` here
(pool checkout, connection lock, command packing, its reply reader; 70 µs with hiredis),
against about 25 µs for this one (benchmarks/redis_counters.py). A model request makes two
such calls, one before forwarding, so that difference is most of what ``backend: redis``
added over memory. Everything else that talks to Redis (ping, pub/sub, sessions) stays on
redis-py, and `RedisCounterStore` runs the same scripts through either (the counter store
contract tests pass with both).

One TCP connection: every call writes its command at once and waits for its own future;
replies arrive in the order commands were sent, so concurrent calls pipeline on the one
connection and each reply completes the oldest waiting future. A caller that stops waiting
(its task cancelled) leaves its place in the queue, and its reply is dropped when it comes.

Every call is bounded by ``stale_after``: one timer per connection (not one per call, which
cost about 15 µs of a call's CPU in the guard's ``asyncio.timeout``) watches the oldest reply
still awaited; once that is overdue the connection is taken as stuck and dropped, failing
every waiting call with ``redis.exceptions.TimeoutError``. A call that must connect first is
bounded as a whole by ``connect_timeout``. A lost connection fails every waiting call
(``redis.exceptions.ConnectionError``) and the next call opens a new one. After a Redis
restart the script cache is empty: ``NOSCRIPT`` is answered by sending the script itself
(``EVAL``, which caches it again).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_BUFFERED = 4 * 1024 * 1024
"""A reply still incomplete past this many bytes is a broken stream (ours are a few hundred)."""

Arg = bytes | str | int | float


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


class _ProtocolError(Exception):
    pass


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at ``pos``: (value, where the next one starts). Errors come back as values."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    if kind == 58:  # ':'
        return int(buf[pos + 1 : end]), end + 2
    if kind == 36:  # '$'
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        start = end + 2
        stop = start + size
        if len(buf) < stop + 2:
            raise _Incomplete
        return buf[start:stop], stop + 2
    if kind == 42:  # '*'
        count = int(buf[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items = []
        at = end + 2
        for _ in range(count):
            item, at = _parse(buf, at)
            items.append(item)
        return items, at
    if kind == 43:  # '+'
        return buf[pos + 1 : end], end + 2
    if kind == 45:  # '-'
        return ResponseError(buf[pos + 1 : end].decode("utf-8", "replace")), end + 2
    raise _ProtocolError(f"unexpected reply type {bytes([kind])!r}")


def _encode(value: Arg) -> bytes:
    """As redis-py encodes arguments (numbers by ``repr``), so both clients send the same bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"cannot send {type(value).__name__} to Redis")
    return repr(value).encode()


def pack(parts: Sequence[Arg]) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = _encode(part)
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)


class _Connection(asyncio.Protocol):
    """One connection: commands written in order, replies handed to the waiting futures in order,
    and dropped once the oldest reply is ``stale_after`` late (the watchdog)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stale_after: float) -> None:
        self.loop = loop
        self.stale_after = stale_after
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.buffer = b""
        self.closed = False
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass of it

    def send(self, command: bytes, future: asyncio.Future[Any], now: float) -> None:
        assert self.transport is not None
        self.waiting.append((future, now))
        self.transport.write(command)
        if self.watchdog is None:
            self.watchdog = self.loop.call_at(now + self.stale_after, self._watch)

    def _watch(self) -> None:
        """Drop the connection if the oldest awaited reply is overdue; else look again when the
        (new) oldest one will be."""
        self.watchdog = None
        if self.closed or not self.waiting:
            return
        due = self.waiting[0][1] + self.stale_after
        if self.loop.time() >= due:
            self.abort(RedisTimeoutError(f"no reply from Redis within {self.stale_after:g} s"))
        else:
            self.watchdog = self.loop.call_at(due, self._watch)

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        pos = 0
        size = len(data)
        waiting = self.waiting
        try:
            while pos < size:
                reply, pos_after = _parse(data, pos)
                pos = pos_after
                if not waiting:
                    raise _ProtocolError("a reply nobody asked for")
                future = waiting.popleft()[0]
                if not future.done():  # a caller that gave up leaves its reply to be dropped
                    future.set_result(reply)
        except _Incomplete:
            pass
        except (_ProtocolError, ValueError, IndexError) as exc:
            self.abort(RedisConnectionError(f"Redis protocol error: {exc}"))
            return
        self.buffer = data[pos:] if pos < size else b""
        if len(self.buffer) > MAX_BUFFERED:
            self.abort(RedisConnectionError("Redis reply too large"))

    def overdue(self, now: float, stale_after: float) -> bool:
        return bool(self.waiting) and now - self.waiting[0][1] > stale_after

    def abort(self, exc: Exception) -> None:
        """Drop the connection and fail every waiting call with ``exc``."""
        self._fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError("connection to Redis lost" + (f": {exc}" if exc else "")))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        self.buffer = b""
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(exc)


class Script:
    """A registered Lua script: awaited with ``keys`` and ``args`` as redis-py's ``AsyncScript`` is."""

    __slots__ = ("client", "sha", "source")

    def __init__(self, client: RespScripts, source: str) -> None:
        self.client = client
        self.source = source.encode()
        # SHA-1 is how Redis names a cached script, nothing more.
        self.sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest().encode()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        client = self.client
        try:
            return await client.call((b"EVALSHA", self.sha, len(keys), *keys, *args))
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Not cached (a restarted or flushed Redis): EVAL sends the script and caches it again.
        return await client.call((b"EVAL", self.source, len(keys), *keys, *args))


class RespScripts:
    """Runs scripts over one pipelined connection to ``host:port`` (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 1.0,
        stale_after: float = 1.0,
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.connect_timeout = connect_timeout
        self.stale_after = stale_after
        self._conn: _Connection | None = None
        self._connecting = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, timeout: float) -> RespScripts | None:
        """A client for a plain ``redis://host:port/db`` URL; None for what only redis-py speaks
        (TLS, unix sockets, URL options), which then runs the scripts itself."""
        parts = urlsplit(url)
        if parts.scheme != "redis" or parts.query or parts.fragment:
            return None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            return None
        return cls(
            parts.hostname or "localhost",
            parts.port or 6379,
            db=int(path or 0),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            connect_timeout=timeout,
            stale_after=timeout,
        )

    def register_script(self, source: str) -> Script:
        return Script(self, source)

    async def call(self, parts: Sequence[Arg]) -> Any:
        """Send one command and wait for its reply (an error reply raises `ResponseError`), at
        most ``stale_after`` (the watchdog), or ``connect_timeout`` in all when it must connect."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        conn = self._conn
        if conn is None or conn.closed or conn.overdue(now, self.stale_after):
            try:
                async with asyncio.timeout(self.connect_timeout):
                    conn = await self._connect(loop)
                    return await self._send(conn, parts, loop, loop.time())
            except TimeoutError:
                raise RedisTimeoutError(f"no reply from Redis within {self.connect_timeout:g} s") from None
        return await self._send(conn, parts, loop, now)

    async def _send(
        self, conn: _Connection, parts: Sequence[Arg], loop: asyncio.AbstractEventLoop, now: float
    ) -> Any:
        future: asyncio.Future[Any] = loop.create_future()
        conn.send(pack(parts), future, now)
        reply = await future
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """The connection, opened with its AUTH and SELECT (the caller bounds the wait)."""
        async with self._connecting:
            conn = self._conn
            if conn is not None and not conn.closed:
                if not conn.overdue(loop.time(), self.stale_after):
                    return conn  # another caller connected while this one waited
                conn.abort(RedisConnectionError("no reply from Redis in time: reconnecting"))
            self._conn = None
            stale_after = self.stale_after
            transport, conn = await loop.create_connection(
                lambda: _Connection(loop, stale_after), self.host, self.port
            )
            conn.transport = transport  # uvloop calls connection_made only later
            try:
                await self._hello(conn, loop)
            except BaseException:
                conn.abort(RedisConnectionError("connection setup failed"))
                raise
            self._conn = conn
            return conn

    async def _hello(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        commands: list[Sequence[Arg]] = []
        if self.password is not None:
            commands.append(
                ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            )
        if self.db:
            commands.append(("SELECT", self.db))
        futures = []
        for command in commands:
            future: asyncio.Future[Any] = loop.create_future()
            conn.send(pack(command), future, loop.time())
            futures.append(future)
        for future in futures:
            reply = await future
            if isinstance(reply, ResponseError):
                raise reply

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.abort(RedisConnectionError("client closed"))
