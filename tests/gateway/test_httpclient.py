"""The hot-path HTTP client, tested as a library would be: against raw servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway_common.http.pool import (
    ConnectError,
    ConnectionLost,
    HttpClientError,
    HttpPool,
    MalformedResponse,
    ReadTimeout,
    request_target,
)
from gateway_common.sse import iter_sse_data

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """A loopback server whose handler sees each request (per connection, numbered) and answers by hand."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.port = 0
        self.connections = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                number += 1
                await self.handler(reader, writer, number)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        raw = RawServer(handler)
        server = await asyncio.start_server(raw._serve, "127.0.0.1", 0, ssl=ssl_context)
        raw.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return raw

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
    writer.write(ok(b'{"n": %d}' % number))
    await writer.drain()


@pytest.mark.anyio
async def test_keep_alive_reuses_one_connection(serve: Callable[..., Awaitable[RawServer]]) -> None:
    server = await serve(echo_handler)
    pool = HttpPool(server.url)
    for expected in range(1, 6):
        async with await pool.request("POST", "/mcp", {"Content-Type": "application/json"}, b"{}") as resp:
            assert resp.status == 200
            assert resp.headers["content-type"] == "application/json"
            assert await resp.read() == b'{"n": %d}' % expected
    assert server.connections == 1 and pool.open_connections == 1
    assert server.requests[0].startswith(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 2\r\n" in server.requests[0]
    await pool.aclose()


@pytest.mark.anyio
async def test_chunked_and_streamed_bodies(serve: Callable[..., Awaitable[RawServer]]) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        first = b'event: message\r\ndata: {"a":1}\r\n\r\n'
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        await writer.drain()
        await release.wait()
        second = b'data: {"b":\r\ndata: 2}\r\n\r\n'
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(second), second))
        await writer.drain()

    server = await serve(handler)
    pool = HttpPool(server.url)
    resp = await pool.request("POST", "/mcp", {}, b"{}")
    events = iter_sse_data(resp.lines())
    assert await anext(events) == b'{"a":1}'  # arrives before the server sends the rest
    release.set()
    assert await anext(events) == b'{"b":\n2}'
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    assert pool.open_connections == 1  # read to the end: kept
    await pool.aclose()


@pytest.mark.anyio
async def test_idle_connection_closed_by_the_server_is_replaced(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    async def close_after_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        writer.write(ok(b"{}"))
        await writer.drain()
        writer.close()

    server = await serve(close_after_answer)
    pool = HttpPool(server.url)
    for _ in range(3):
        async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b"{}"
        await asyncio.sleep(0.05)  # the close reaches us while idle
    assert server.connections == 3
    await pool.aclose()


@pytest.mark.anyio
async def test_a_reused_connection_dying_before_the_response_is_retried_once(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    async def drop_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        if number == 2:
            writer.transport.abort()  # the keep-alive race: request written, socket gone
            return
        writer.write(ok(b'"fine"'))
        await writer.drain()

    server = await serve(drop_second)
    pool = HttpPool(server.url)
    for _ in range(2):
        async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b'"fine"'
    assert server.connections == 2
    await pool.aclose()


@pytest.mark.anyio
async def test_a_fresh_connection_dying_is_an_error_not_a_retry(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.transport.abort()

    server = await serve(drop)
    pool = HttpPool(server.url)
    with pytest.raises(ConnectionLost) as lost:
        await pool.request("POST", "/mcp", {}, b"{}")
    assert lost.value.before_response
    assert server.connections == 1
    await pool.aclose()


@pytest.mark.anyio
async def test_connection_close_responses_are_not_reused(serve: Callable[..., Awaitable[RawServer]]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(ok(b"{}", b"Connection: close\r\n"))
        await writer.drain()

    server = await serve(handler)
    pool = HttpPool(server.url)
    for _ in range(2):
        async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
            await resp.read()
    assert server.connections == 2
    await pool.aclose()


@pytest.mark.anyio
async def test_large_body_with_a_slow_reader(serve: Callable[..., Awaitable[RawServer]]) -> None:
    blob = bytes(range(256)) * 32 * 1024  # 8 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(blob))
        writer.write(blob)
        await writer.drain()

    server = await serve(handler)
    pool = HttpPool(server.url)
    resp = await pool.request("GET", "/big", {})
    received = bytearray()
    async for chunk in resp.iter_chunks():
        received += chunk
        await asyncio.sleep(0)  # a consumer slower than loopback
    assert bytes(received) == blob
    await pool.aclose()


@pytest.mark.anyio
async def test_cancelled_mid_response_closes_the_connection(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)

    server = await serve(slow)
    pool = HttpPool(server.url)
    resp = await pool.request("POST", "/mcp", {}, b"{}")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await resp.read()
    assert pool.in_use == 1
    resp.release()
    assert pool.open_connections == 0 and pool.in_use == 0
    await pool.aclose()


@pytest.mark.anyio
async def test_connections_are_bounded(serve: Callable[..., Awaitable[RawServer]]) -> None:
    busy = 0
    peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        await asyncio.sleep(0.02)
        busy -= 1
        writer.write(ok(b"{}"))
        await writer.drain()

    server = await serve(handler)
    pool = HttpPool(server.url, max_connections=2)

    async def one() -> None:
        async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
            await resp.read()

    await asyncio.gather(*(one() for _ in range(8)))
    assert peak == 2 and server.connections == 2 and pool.in_use == 0
    await pool.aclose()


@pytest.mark.anyio
async def test_refused_and_malformed(serve: Callable[..., Awaitable[RawServer]]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    server = await serve(garbage)
    pool = HttpPool(server.url)
    with pytest.raises(MalformedResponse, match=r"malformed HTTP response"):
        await pool.request("POST", "/mcp", {}, b"{}")
    await pool.aclose()

    closed = HttpPool("http://127.0.0.1:1/mcp")
    with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1:1") as refused:
        await closed.request("POST", "/mcp", {}, b"{}")
    assert refused.value.reason == "Connection refused"
    with pytest.raises(ValueError, match="not an http"):
        HttpPool("ftp://example.com")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.anyio
async def test_https_verifies_the_server(serve: Callable[..., Awaitable[RawServer]], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = await serve(echo_handler, server_ctx)
    url = f"https://127.0.0.1:{server.port}/mcp"

    trusting = ssl.create_default_context(cafile=str(cert))
    pool = HttpPool(url, ssl_context=trusting)
    async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b'{"n": 1}'
    await pool.aclose()

    default = HttpPool(url)  # system trust store: the self-signed certificate is refused
    with pytest.raises(HttpClientError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await default.request("POST", "/mcp", {}, b"{}")
    await default.aclose()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.anyio
async def test_read_timeout_while_waiting_for_the_headers(serve: Callable[..., Awaitable[RawServer]]) -> None:
    async def silent_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        if server.connections == 1:
            await asyncio.sleep(5)  # accepts the request, never answers
        writer.write(ok(b"{}"))
        await writer.drain()

    server = await serve(silent_first)
    pool = HttpPool(server.url, read_timeout=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ReadTimeout, match=r"127\.0\.0\.1:\d+ sent nothing for 0\.2 s"):
        await pool.request("POST", "/mcp", {}, b"{}")
    assert 0.19 < asyncio.get_running_loop().time() - started < 1.0
    assert pool.open_connections == 0 and pool.in_use == 0  # the silent connection is dropped
    async with await pool.request("POST", "/mcp", {}, b"{}") as resp:  # the pool still works
        assert await resp.read() == b"{}"
    await pool.aclose()


@pytest.mark.anyio
async def test_read_timeout_is_per_read_not_per_response(serve: Callable[..., Awaitable[RawServer]]) -> None:
    async def steady_then_stuck(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        writer.write(STREAM_HEAD)
        for index in range(6):  # 0.6 s in all, never more than 0.1 s of silence
            writer.write(chunk(b"data: %d\n\n" % index))
            await writer.drain()
            await asyncio.sleep(0.1)
        if number == 1:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        else:
            await asyncio.sleep(5)  # the second stream stalls after its sixth event

    server = await serve(steady_then_stuck)
    pool = HttpPool(server.url, read_timeout=0.3)
    resp = await pool.request("POST", "/mcp", {}, b"{}")
    assert await resp.read() == b"".join(b"data: %d\n\n" % i for i in range(6))

    resp = await pool.request("POST", "/mcp", {}, b"{}")
    received: list[bytes] = []

    async def read_all() -> None:
        while piece := await resp.read_some():
            received.append(piece)

    with pytest.raises(ReadTimeout):
        await read_all()
    assert b"".join(received).count(b"\n\n") == 6
    resp.release()
    assert pool.open_connections == 0
    await pool.aclose()


@pytest.mark.anyio
async def test_a_slow_reader_is_not_a_silent_server(serve: Callable[..., Awaitable[RawServer]]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(chunk(b"data: 2\n\n") + b"0\r\n\r\n")
        await writer.drain()

    server = await serve(handler)
    pool = HttpPool(server.url, read_timeout=0.15)
    resp = await pool.request("POST", "/mcp", {}, b"{}")
    assert await resp.read_some() == b"data: 1\n\n"
    await asyncio.sleep(0.4)  # the consumer dawdles; everything has arrived meanwhile
    assert await resp.read_some() == b"data: 2\n\n"
    assert resp.at_eof()
    assert await resp.read_some() == b""
    await asyncio.sleep(0.4)  # idle in the pool for longer than the read timeout: still fine
    async with await pool.request("POST", "/mcp", {}, b"{}") as again:
        assert await again.read() == b"data: 1\n\ndata: 2\n\n"
    assert server.connections == 1
    await pool.aclose()


@pytest.mark.anyio
async def test_read_some_returns_everything_that_arrived_in_one_piece(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(STREAM_HEAD + chunk(b"a") + chunk(b"b") + chunk(b"c"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server = await serve(handler)
    pool = HttpPool(server.url)
    resp = await pool.request("POST", "/mcp", {}, b"{}")
    await asyncio.sleep(0.02)  # all three chunks are in
    assert await resp.read_some() == b"abc"
    assert not resp.at_eof()
    assert await resp.read_some() == b""
    assert pool.open_connections == 1  # ended: the connection went back to the pool
    await pool.aclose()


@pytest.mark.anyio
async def test_closing_a_response_wakes_its_reader(serve: Callable[..., Awaitable[RawServer]]) -> None:
    async def hanging(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(5)

    server = await serve(hanging)
    pool = HttpPool(server.url)
    resp = await pool.request("POST", "/mcp", {}, b"{}")
    assert await resp.read_some() == b"data: 1\n\n"
    reader = asyncio.create_task(resp.read_some())
    await asyncio.sleep(0.01)
    resp.close()  # e.g. the client of a relayed stream went away
    with pytest.raises(ConnectionLost) as lost:
        await asyncio.wait_for(reader, 1)
    assert not lost.value.before_response
    assert pool.open_connections == 0
    await pool.aclose()


@pytest.mark.anyio
async def test_a_body_without_length_ends_when_the_server_closes(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    async def old_style(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>bad")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b" gateway</html>")
        await writer.drain()
        writer.close()

    server = await serve(old_style)
    pool = HttpPool(server.url)
    async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
        assert resp.status == 502
        assert await resp.read() == b"<html>bad gateway</html>"
    assert pool.open_connections == 0
    await pool.aclose()


@pytest.mark.anyio
async def test_idle_connections_older_than_idle_timeout_are_not_reused(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    server = await serve(echo_handler)
    pool = HttpPool(server.url, idle_timeout=0.1)
    for expected in (1, 2):
        async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b'{"n": %d}' % expected
    assert server.connections == 1
    await asyncio.sleep(0.2)
    async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b'{"n": 1}'  # first request on a new connection
    assert server.connections == 2 and pool.open_connections == 1
    await pool.aclose()


@pytest.mark.anyio
async def test_retry_stale_within_keeps_a_late_failure_from_being_repeated(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    async def slow_death(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        if number == 2:
            await asyncio.sleep(0.3)  # worked on the request for a while, then died without answering
            writer.transport.abort()
            return
        writer.write(ok(b'"fine"'))
        await writer.drain()

    server = await serve(slow_death)
    pool = HttpPool(server.url, retry_stale_within=0.1)
    async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b'"fine"'
    with pytest.raises(ConnectionLost) as lost:
        await pool.request("POST", "/mcp", {}, b"{}")
    assert lost.value.before_response
    assert len(server.requests) == 2  # not sent again
    await pool.aclose()

    fast = await serve(slow_death)
    pool = HttpPool(fast.url, retry_stale_within=5.0)  # the same death within the window is retried
    for _ in range(2):
        async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b'"fine"'
    assert len(fast.requests) == 3 and fast.connections == 2
    await pool.aclose()


def test_request_target_keeps_a_base_path_and_query() -> None:
    assert request_target("https://api.example.com") == "/"
    assert request_target("http://127.0.0.1:8100/v1") == "/v1"
    assert request_target("https://h/openai/v1/chat?api-version=2") == "/openai/v1/chat?api-version=2"


@pytest.mark.anyio
async def test_an_address_that_swallows_connects_is_raced_not_waited_for(
    serve: Callable[..., Awaitable[RawServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await serve(echo_handler)
    full = socket.socket()  # a listener whose backlog is full: the kernel drops further SYNs
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = [socket.socket() for _ in range(2)]
    for filler in fillers:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(full.getsockname())
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    real_resolve = loop.getaddrinfo

    async def resolve(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != "dual-stack.test":  # uvloop's sock_connect resolves literal addresses through it too
            return await real_resolve(host, port, **kwargs)
        tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(*tcp, full.getsockname()), (*tcp, ("127.0.0.1", server.port))]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    pool = HttpPool(f"http://dual-stack.test:{server.port}/mcp", connect_timeout=3)
    started = loop.time()
    async with await pool.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b'{"n": 1}'
    assert loop.time() - started < 1.5  # the second address after 0.25 s, not after the connect timeout
    assert server.requests[0].startswith(b"POST /mcp HTTP/1.1\r\nHost: dual-stack.test:")
    await pool.aclose()
    for sock in (*fillers, full):
        sock.close()
