"""The hot-path HTTP client, tested as a library would be: against raw servers that misbehave."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mcp_gateway.upstream.httpclient import ConnectionLost, HttpClientError, HttpPool
from mcp_gateway.upstream.sse import iter_sse_data

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
    await pool.close()


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
    await pool.close()


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
    await pool.close()


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
    await pool.close()


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
    await pool.close()


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
    await pool.close()


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
    await pool.close()


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
    resp.release()
    assert pool.open_connections == 0
    await pool.close()


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
    assert peak == 2 and server.connections == 2
    await pool.close()


@pytest.mark.anyio
async def test_refused_and_malformed(serve: Callable[..., Awaitable[RawServer]]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    server = await serve(garbage)
    pool = HttpPool(server.url)
    with pytest.raises(HttpClientError, match=r"malformed HTTP response"):
        await pool.request("POST", "/mcp", {}, b"{}")
    await pool.close()

    closed = HttpPool("http://127.0.0.1:1/mcp")
    with pytest.raises(HttpClientError, match=r"cannot connect to 127\.0\.0\.1:1"):
        await closed.request("POST", "/mcp", {}, b"{}")
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
    await pool.close()

    default = HttpPool(url)  # system trust store: the self-signed certificate is refused
    with pytest.raises(HttpClientError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await default.request("POST", "/mcp", {}, b"{}")
    await default.close()
