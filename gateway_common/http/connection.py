"""One HTTP/1.1 connection of `pool.HttpPool`: an asyncio protocol around the httptools parser,
and the response object callers read."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httptools

from gateway_common.http.base import (
    ConnectionLost,
    HttpClientError,
    MalformedResponse,
    ReadTimeout,
)
from gateway_common.http.headers import Headers
from gateway_common.http.lines import LineReader

if TYPE_CHECKING:
    from gateway_common.http.pool import HttpPool

_HIGH_WATER = 1024 * 1024
"""Buffered response bytes above which we stop reading the socket until the caller catches up."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request/response at a time."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._headers_ready: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._data_waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._got_bytes = False
        self._until_eof = False
        self._error: BaseException | None = None
        self._paused_reading = False
        self._write_paused = False
        self._write_waiter: asyncio.Future[None] | None = None
        # Read timeout: one timer per connection, re-armed lazily (not per chunk) while a read waits.
        self._read_timeout = pool.read_timeout
        self._waiting = False
        self._silent_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.status = 0
        self.keep_alive = False
        self.headers = Headers()
        self._interim = False
        """The message being parsed is an interim (1xx) response: skipped, the final one follows."""

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._waiting:
            self._silent_since = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(MalformedResponse("malformed HTTP response: an upgrade the client did not ask for"))
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        with contextlib.suppress(httptools.HttpParserError):
            self.parser.feed_data(b"")
        if self._until_eof and not self._complete:
            self.on_message_complete()  # a body without a length ends when the server closes
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if not self._complete:
            reason = f"connection lost: {exc}" if exc else "connection closed by the server"
            self._fail(ConnectionLost(reason, before_response=not self._got_bytes))
        self._wake_writer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._silent_since = self.loop.time()  # the server is reading: progress
        self._wake_writer()

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        size = len(headers)
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers.setdefault(key, text)  # the first value wins; C calls only, as with a plain dict
        if len(headers) == size:
            headers.add_repeat(key, text)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                self._fail(MalformedResponse("unexpected 101 Switching Protocols: no upgrade was asked for"))
            else:  # 100 Continue, 102 Processing, 103 Early Hints: the final response follows
                self._interim = True
                self.headers = Headers()
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        headers = self.headers
        self._until_eof = (
            not self.keep_alive
            and status >= 200
            and status not in (204, 304)
            and "content-length" not in headers
            and "transfer-encoding" not in headers
        )
        if self._headers_ready is not None and not self._headers_ready.done():
            self._headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and self.transport is not None and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()
        if self._data_waiter is not None:
            self._wake_reader()

    def on_message_complete(self) -> None:
        if self._interim or self._error is not None:
            self._interim = False
            return
        self._complete = True
        if self._data_waiter is not None:
            self._wake_reader()

    # -- timers and failures -------------------------------------------------------------

    def _await_bytes(self) -> None:
        """A read starts waiting: the server's silence is measured from now (or its next bytes)."""
        if self._read_timeout is not None:
            self._waiting = True
            self._silent_since = self.loop.time()
            if self._timer is None:
                self._timer = self.loop.call_at(self._silent_since + self._read_timeout, self._check_silence)

    def _check_silence(self) -> None:
        self._timer = None
        if not self._waiting or self.closed or self._read_timeout is None:
            return
        deadline = self._silent_since + self._read_timeout
        if self.loop.time() >= deadline - 0.001:  # timers may fire up to a clock tick early
            self._fail(ReadTimeout(f"{self.pool.host_header} sent nothing for {self._read_timeout:g} s"))
        else:
            self._timer = self.loop.call_at(deadline, self._check_silence)

    def _wake_reader(self) -> None:
        waiter, self._data_waiter = self._data_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._headers_ready is not None and not self._headers_ready.done():
            self._headers_ready.set_exception(error)
        if self._data_waiter is not None:
            self._wake_reader()
        self._wake_writer()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # close() would first wait to flush a write the server is not reading

    # -- used by the pool and the response -----------------------------------------------

    def close(self) -> None:
        """Close after a whole response; mid-response, abort at once and wake whoever waits on it."""
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            if self._complete or self._headers_ready is None:
                self.transport.close()
            else:  # (a TLS close would first wait up to 30 s for the server's close_notify)
                self._fail(ConnectionLost("closed by the client", before_response=not self._got_bytes))

    async def send(self, payload: bytes) -> None:
        self._headers_ready = self.loop.create_future()
        self._chunks.clear()
        self._buffered = 0
        self._complete = False
        self._got_bytes = False
        self._until_eof = False
        self._error = None
        self.headers = Headers()
        self._interim = False
        self.status = 0
        if self.transport is None or self.transport.is_closing():
            raise ConnectionLost("connection already closed", before_response=True)
        self._await_bytes()
        try:
            self.transport.write(payload)
            if self._write_paused:
                self._write_waiter = self.loop.create_future()
                await self._write_waiter
            await self._headers_ready
        finally:
            self._waiting = False

    async def next_chunk(self, joined: bool = False) -> bytes | None:
        """The next body chunk (``joined``: everything that has arrived), or None at the end of the body."""
        while True:
            chunks = self._chunks
            if chunks:
                if joined and len(chunks) > 1:
                    chunk = b"".join(chunks)
                    chunks.clear()
                    self._buffered = 0
                else:
                    chunk = chunks.popleft()
                    self._buffered -= len(chunk)
                if self._paused_reading and self._buffered < _HIGH_WATER // 2 and self.transport is not None:
                    self._paused_reading = False
                    self.transport.resume_reading()
                return chunk
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._data_waiter = waiter = self.loop.create_future()
            self._await_bytes()
            try:
                await waiter
            finally:
                self._data_waiter = None
                self._waiting = False

    @property
    def at_eof(self) -> bool:
        return self._complete and not self._chunks

    @property
    def reusable(self) -> bool:
        return self._complete and not self.closed and self.keep_alive


class Response:
    def __init__(self, conn: _Connection, pool: HttpPool) -> None:
        self._conn = conn
        self._pool = pool
        self.status = conn.status
        self.headers = conn.headers
        self._released = False
        self._ended = False

    def _after_release(self) -> bytes:
        """A read after `release`: the connection may already carry another request; never touch it."""
        if self._ended:
            return b""
        raise ConnectionLost("the response was released before its end", before_response=False)

    async def read(self) -> bytes:
        if self._released:
            return self._after_release()
        parts = []
        while (chunk := await self._conn.next_chunk()) is not None:
            parts.append(chunk)
        self.release()
        return b"".join(parts)

    async def read_some(self) -> bytes:
        """All the body bytes that have arrived, waiting for some if none have; ``b""`` at the end."""
        if self._released:
            return self._after_release()
        chunk = await self._conn.next_chunk(joined=True)
        if chunk is None:
            self.release()
            return b""
        return chunk

    def at_eof(self) -> bool:
        """Whether the whole body has arrived and been read (the next read would return the end)."""
        return self._ended if self._released else self._conn.at_eof

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        if self._released:
            self._after_release()
            return
        while (chunk := await self._conn.next_chunk()) is not None:
            yield chunk
        self.release()

    async def drain(self, timeout: float) -> None:
        """Read what is left of the body (within ``timeout``) so the connection can be kept."""
        if not self._released:
            with contextlib.suppress(TimeoutError, HttpClientError):
                async with asyncio.timeout(timeout):
                    while await self._conn.next_chunk() is not None:
                        pass
        self.release()

    def lines(self) -> LineReader:
        """The body cut at line endings (for SSE)."""
        return LineReader(self.read_some)

    def release(self) -> None:
        """Hand the connection back if the response was read to the end; otherwise close it."""
        if self._released:
            return
        self._released = True
        self._ended = self._conn.at_eof
        self._pool._release(self._conn)

    def close(self) -> None:
        """Drop the connection whatever is left of the body (a reader waiting on it gets `ConnectionLost`)."""
        self._conn.close()
        self.release()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
