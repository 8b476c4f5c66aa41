"""The HTTP client contract: every `HttpClient` implementation (the fast pool and the httpx one) passes
these, against raw loopback servers that misbehave on purpose. Pool internals are tested in
test_httpclient.py."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway_common.http import (
    ClientOptions,
    ConnectError,
    ConnectionLost,
    HttpClient,
    HttpClientError,
    InvalidRequest,
    MalformedResponse,
    ReadTimeout,
    open_client,
)
from gateway_common.sse import iter_sse_data, iter_sse_events
from policies.http_client import TlsFiles
from tests.fixtures.raw_http import STREAM_HEAD, RawServer, chunk, echo_handler, ok, raw_servers
from tests.fixtures.tls import TestCA

pytestmark = pytest.mark.anyio
Serve = Callable[..., Awaitable[RawServer]]
Connect = Callable[..., HttpClient]
Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


@pytest.fixture(params=["fast", "httpx"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    async with raw_servers() as start:
        yield start


@pytest.fixture
async def connect(kind: str) -> AsyncIterator[Connect]:
    clients: list[HttpClient] = []

    def make(url: str, **options: Any) -> HttpClient:
        client = open_client(url, ClientOptions(transport=kind, **options), environ={})  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_the_chosen_implementation_is_the_one_under_test(
    serve: Serve, connect: Connect, kind: str
) -> None:
    server = await serve(echo_handler)
    client = connect(server.url)
    assert type(client).__name__ == {"fast": "HttpPool", "httpx": "HttpxClient"}[kind]


async def test_keep_alive_reuses_one_connection(serve: Serve, connect: Connect) -> None:
    server = await serve(echo_handler)
    client = connect(server.url)
    for expected in range(1, 6):
        async with await client.request("POST", "/mcp", {"Content-Type": "application/json"}, b"{}") as resp:
            assert resp.status == 200
            assert resp.headers["content-type"] == "application/json"
            assert resp.headers.get("Content-Type") == "application/json"  # names are case-insensitive
            assert await resp.read() == b'{"n": %d}' % expected
    assert server.connections == 1 and client.open_connections == 1 and client.in_use == 0
    first = server.requests[0]
    assert first.startswith(b"POST /mcp HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"\r\nContent-Length: 2\r\n" in first
    assert b"accept-encoding" not in first.lower()  # identity: bodies are relayed byte for byte


async def test_bodies_are_passed_through_undecoded(serve: Serve, connect: Connect) -> None:
    packed = gzip.compress(b'{"big": "' + b"x" * 1000 + b'"}')

    async def gzipped(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(ok(packed, b"Content-Encoding: gzip\r\n"))
        await writer.drain()

    client = connect((await serve(gzipped)).url)
    async with await client.request("GET", "/", {}) as resp:
        assert resp.headers["content-encoding"] == "gzip"
        assert await resp.read() == packed


async def test_interim_responses_are_skipped(serve: Serve, connect: Connect) -> None:
    async def with_interims(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)  # the final response in a later packet
        writer.write(
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 102 Processing\r\n\r\n" + ok(b'{"n": %d}' % number, b"X-Final: yes\r\n")
        )
        await writer.drain()

    server = await serve(with_interims)
    client = connect(server.url)
    for expected in (1, 2):
        async with await client.request("POST", "/mcp", {}, b"{}") as resp:
            assert resp.status == 200
            assert resp.headers.get("x-final") == "yes"
            assert "link" not in resp.headers  # an interim response's headers are not the final ones
            assert await resp.read() == b'{"n": %d}' % expected
    assert server.connections == 1  # and the connection stays usable


async def test_an_unasked_for_101_is_an_error(serve: Serve, connect: Connect) -> None:
    async def upgrade(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        await writer.drain()

    client = connect((await serve(upgrade)).url)
    with pytest.raises(MalformedResponse, match=r"(?i)101|upgrade"):
        await client.request("POST", "/mcp", {}, b"{}")
    assert client.in_use == 0


async def test_repeated_response_headers_are_all_kept(serve: Serve, connect: Connect) -> None:
    async def cookies(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(ok(b"{}", b"Set-Cookie: a=1\r\nX-Other: x\r\nset-cookie: b=2\r\nSet-Cookie: c=3\r\n"))
        await writer.drain()

    client = connect((await serve(cookies)).url)
    async with await client.request("GET", "/", {}) as resp:
        assert resp.headers.get("set-cookie") == "a=1"  # the first
        assert resp.headers["Set-Cookie"] == "a=1"
        assert resp.headers.get_all("SET-COOKIE") == ["a=1", "b=2", "c=3"]
        assert resp.headers.get_all("x-other") == ["x"]
        assert resp.headers.get_all("missing") == []
        await resp.read()


@pytest.mark.parametrize(
    ("headers", "target", "culprit"),
    [
        ({"X-Token": "abc\r\nX-Injected: 1"}, "/mcp", "'\\r'"),
        ({"X-Token": "abc\nX-Injected: 1"}, "/mcp", "'\\n'"),
        ({"X-Token": "abc\x00def"}, "/mcp", "'\\x00'"),
        ({"X-Token": "abc\x7f"}, "/mcp", "'\\x7f'"),
        ({"X-Bad\r\nName": "v"}, "/mcp", "not a valid HTTP field name"),
        ({"X Bad": "v"}, "/mcp", "not a valid HTTP field name"),
        ({"Mcp-Name": "工具"}, "/mcp", "outside Latin-1"),
        ({"Host": "evil.example"}, "/mcp", "set by the HTTP client itself"),
        ({"content-length": "0"}, "/mcp", "set by the HTTP client itself"),
        ({}, "/mcp HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /", "invalid request target"),
        ({}, "/a b", "invalid request target"),
        ({}, "/a\x01b", "invalid request target"),
    ],
)
async def test_header_injection_is_refused_before_anything_is_sent(
    serve: Serve, connect: Connect, headers: dict[str, str], target: str, culprit: str
) -> None:
    server = await serve(echo_handler)
    client = connect(server.url)
    with pytest.raises(InvalidRequest, match="refused to send") as refused:
        await client.request("POST", target, headers, b"{}")
    assert culprit in str(refused.value)
    assert isinstance(refused.value, HttpClientError) and isinstance(refused.value, ValueError)
    assert server.connections == 0 and server.requests == [] and client.in_use == 0
    async with await client.request("POST", "/mcp", {"X-Token": "fine\tvalue é"}, b"{}") as resp:
        assert await resp.read() == b'{"n": 1}'  # the client is unharmed; HTAB and Latin-1 are fine
    assert b"X-Token: fine\tvalue \xe9\r\n" in server.requests[0]


async def test_chunked_and_streamed_bodies(serve: Serve, connect: Connect) -> None:
    release = asyncio.Event()

    async def handler(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(STREAM_HEAD)
        writer.write(chunk(b'event: message\r\ndata: {"a":1}\r\n\r\n'))
        await writer.drain()
        await release.wait()
        writer.write(chunk(b'data: {"b":\r\ndata: 2}\r\n\r\n') + b"0\r\n\r\n")
        await writer.drain()

    client = connect((await serve(handler)).url)
    resp = await client.request("POST", "/mcp", {}, b"{}")
    events = iter_sse_data(resp.lines())
    assert await anext(events) == b'{"a":1}'  # arrives before the server sends the rest
    release.set()
    assert await anext(events) == b'{"b":\n2}'
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    assert client.open_connections == 1 and client.in_use == 0  # read to the end: kept


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
async def test_sse_lines_in_every_framing_arrive_as_they_are_sent(
    serve: Serve, connect: Connect, newline: bytes
) -> None:
    release = asyncio.Event()

    def event(n: int) -> bytes:
        return b"id: %d" % n + newline + b"data: {}" + newline + newline

    async def handler(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(STREAM_HEAD + chunk(event(1)))
        await writer.drain()
        await release.wait()
        writer.write(chunk(event(2)) + b"0\r\n\r\n")
        await writer.drain()

    client = connect((await serve(handler)).url)
    resp = await client.request("GET", "/", {})
    events = iter_sse_events(resp.lines())
    first = await asyncio.wait_for(anext(events), 5)  # not held back until the stream ends
    release.set()
    assert [first.id, (await anext(events)).id] == ["1", "2"]


async def test_idle_connection_closed_by_the_server_is_replaced(serve: Serve, connect: Connect) -> None:
    async def close_after_answer(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(ok(b"{}"))
        await writer.drain()
        writer.close()

    server = await serve(close_after_answer)
    client = connect(server.url)
    for _ in range(3):
        async with await client.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b"{}"
        await asyncio.sleep(0.05)  # the close reaches us while idle
    assert server.connections == 3


async def test_a_reused_connection_dying_before_the_response_is_retried_once(
    serve: Serve, connect: Connect
) -> None:
    async def drop_second(reader: Reader, writer: Writer, number: int) -> None:
        if number == 2:
            writer.transport.abort()  # the keep-alive race: request written, socket gone
            return
        writer.write(ok(b'"fine"'))
        await writer.drain()

    server = await serve(drop_second)
    client = connect(server.url)
    for _ in range(2):
        async with await client.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b'"fine"'
    assert server.connections == 2


async def test_a_fresh_connection_dying_is_an_error_not_a_retry(serve: Serve, connect: Connect) -> None:
    async def drop(reader: Reader, writer: Writer, number: int) -> None:
        writer.transport.abort()

    server = await serve(drop)
    client = connect(server.url)
    with pytest.raises(ConnectionLost) as lost:
        await client.request("POST", "/mcp", {}, b"{}")
    assert lost.value.before_response
    assert server.connections == 1 and client.in_use == 0


async def test_retry_stale_within_keeps_a_late_failure_from_being_repeated(
    serve: Serve, connect: Connect
) -> None:
    async def slow_death(reader: Reader, writer: Writer, number: int) -> None:
        if number == 2:
            await asyncio.sleep(0.3)  # worked on the request for a while, then died without answering
            writer.transport.abort()
            return
        writer.write(ok(b'"fine"'))
        await writer.drain()

    server = await serve(slow_death)
    client = connect(server.url, retry_stale_within=0.1)
    async with await client.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b'"fine"'
    with pytest.raises(ConnectionLost) as lost:
        await client.request("POST", "/mcp", {}, b"{}")
    assert lost.value.before_response
    assert len(server.requests) == 2  # not sent again

    patient = await serve(slow_death)
    client = connect(patient.url, retry_stale_within=5.0)  # the same death within the window is retried
    for _ in range(2):
        async with await client.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b'"fine"'
    assert len(patient.requests) == 3 and patient.connections == 2


async def test_connection_close_responses_are_not_reused(serve: Serve, connect: Connect) -> None:
    async def handler(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(ok(b"{}", b"Connection: close\r\n"))
        await writer.drain()

    server = await serve(handler)
    client = connect(server.url)
    for _ in range(2):
        async with await client.request("POST", "/mcp", {}, b"{}") as resp:
            await resp.read()
    assert server.connections == 2


async def test_large_body_with_a_slow_reader(serve: Serve, connect: Connect) -> None:
    blob = bytes(range(256)) * 32 * 1024  # 8 MiB

    async def handler(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(blob))
        writer.write(blob)
        await writer.drain()

    client = connect((await serve(handler)).url)
    resp = await client.request("GET", "/big", {})
    received = bytearray()
    async for piece in resp.iter_chunks():
        received += piece
        await asyncio.sleep(0)  # a consumer slower than loopback
    assert bytes(received) == blob
    assert resp.at_eof()


async def test_cancelled_mid_response_closes_the_connection(serve: Serve, connect: Connect) -> None:
    async def slow(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)

    client = connect((await serve(slow)).url)
    resp = await client.request("POST", "/mcp", {}, b"{}")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await resp.read()
    assert client.in_use == 1
    resp.release()
    await asyncio.sleep(0.01)
    assert client.open_connections == 0 and client.in_use == 0


async def test_cancelled_while_waiting_for_the_headers(serve: Serve, connect: Connect) -> None:
    async def silent(reader: Reader, writer: Writer, number: int) -> None:
        if number == 1 and server.connections == 1:
            await asyncio.sleep(5)
        writer.write(ok(b"{}"))
        await writer.drain()

    server = await serve(silent)
    client = connect(server.url)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await client.request("POST", "/mcp", {}, b"{}")
    await asyncio.sleep(0.01)
    assert client.open_connections == 0 and client.in_use == 0  # abandoned with its connection
    async with await client.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b"{}"
    assert server.connections == 2


async def test_connections_are_bounded(serve: Serve, connect: Connect) -> None:
    busy = peak = 0

    async def handler(reader: Reader, writer: Writer, number: int) -> None:
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        await asyncio.sleep(0.02)
        busy -= 1
        writer.write(ok(b"{}"))
        await writer.drain()

    server = await serve(handler)
    client = connect(server.url, max_connections=2)

    async def one() -> None:
        async with await client.request("POST", "/mcp", {}, b"{}") as resp:
            await resp.read()

    await asyncio.gather(*(one() for _ in range(8)))
    assert peak == 2 and server.connections == 2 and client.in_use == 0


async def test_refused_and_malformed(serve: Serve, connect: Connect) -> None:
    async def garbage(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    client = connect((await serve(garbage)).url)
    with pytest.raises(MalformedResponse, match=r"malformed HTTP response"):
        await client.request("POST", "/mcp", {}, b"{}")
    assert client.in_use == 0

    closed = connect("http://127.0.0.1:1/mcp")
    with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1:1") as refused:
        await closed.request("POST", "/mcp", {}, b"{}")
    assert refused.value.reason == "Connection refused"
    with pytest.raises(ValueError, match="not an http"):
        connect("ftp://example.com")


async def test_https_with_a_ca_bundle(serve: Serve, connect: Connect, tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    server = await serve(echo_handler, ca.server_context())
    client = connect(server.url, tls=TlsFiles(ca_bundle=str(ca.cert_path)))
    async with await client.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b'{"n": 1}'

    default = connect(server.url)  # the system trust store: the test CA is not in it
    with pytest.raises(ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await default.request("POST", "/mcp", {}, b"{}")
    other_ca = TestCA(tmp_path / "other", "Some Other CA")
    wrong = connect(server.url, tls=TlsFiles(ca_bundle=str(other_ca.cert_path)))
    with pytest.raises(ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await wrong.request("POST", "/mcp", {}, b"{}")


async def test_https_with_a_client_certificate(serve: Serve, connect: Connect, tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    server = await serve(echo_handler, ca.server_context(require_client_cert=True))
    issued = ca.issue("client", ("gateway",), client=True)
    tls = TlsFiles(ca_bundle=str(ca.cert_path), client_cert=str(issued.cert), client_key=str(issued.key))
    client = connect(server.url, tls=tls)
    for expected in (1, 2):
        async with await client.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b'{"n": %d}' % expected

    anonymous = connect(server.url, tls=TlsFiles(ca_bundle=str(ca.cert_path)))
    with pytest.raises(HttpClientError):  # TLS 1.3: refused at the handshake or at the first read
        async with await anonymous.request("POST", "/mcp", {}, b"{}") as resp:
            await resp.read()
    assert anonymous.in_use == 0


async def test_read_timeout_while_waiting_for_the_headers(serve: Serve, connect: Connect) -> None:
    async def silent_first(reader: Reader, writer: Writer, number: int) -> None:
        if server.connections == 1:
            await asyncio.sleep(5)  # accepts the request, never answers
        writer.write(ok(b"{}"))
        await writer.drain()

    server = await serve(silent_first)
    client = connect(server.url, read_timeout=0.2)
    with pytest.raises(ReadTimeout, match=r"127\.0\.0\.1:\d+ sent nothing for 0\.2 s"):
        await client.request("POST", "/mcp", {}, b"{}")
    await asyncio.sleep(0.01)
    assert client.open_connections == 0 and client.in_use == 0  # the silent connection is dropped
    async with await client.request("POST", "/mcp", {}, b"{}") as resp:  # the client still works
        assert await resp.read() == b"{}"


async def test_read_timeout_is_per_read_not_per_response(serve: Serve, connect: Connect) -> None:
    async def steady_then_stuck(reader: Reader, writer: Writer, number: int) -> None:
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

    client = connect((await serve(steady_then_stuck)).url, read_timeout=0.3)
    resp = await client.request("POST", "/mcp", {}, b"{}")
    assert await resp.read() == b"".join(b"data: %d\n\n" % i for i in range(6))

    resp = await client.request("POST", "/mcp", {}, b"{}")
    received: list[bytes] = []

    async def read_all() -> None:
        while piece := await resp.read_some():
            received.append(piece)

    with pytest.raises(ReadTimeout):
        await read_all()
    assert b"".join(received).count(b"\n\n") == 6
    resp.release()
    await asyncio.sleep(0.01)
    assert client.open_connections == 0 and client.in_use == 0


async def test_a_slow_reader_is_not_a_silent_server(serve: Serve, connect: Connect) -> None:
    async def handler(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(chunk(b"data: 2\n\n") + b"0\r\n\r\n")
        await writer.drain()

    server = await serve(handler)
    client = connect(server.url, read_timeout=0.15)
    resp = await client.request("POST", "/mcp", {}, b"{}")
    assert await resp.read_some() == b"data: 1\n\n"
    await asyncio.sleep(0.4)  # the consumer dawdles; everything has arrived meanwhile
    assert await resp.read_some() == b"data: 2\n\n"
    assert await resp.read_some() == b""
    assert resp.at_eof()
    await asyncio.sleep(0.4)  # idle in the pool for longer than the read timeout: still fine
    async with await client.request("POST", "/mcp", {}, b"{}") as again:
        assert await again.read() == b"data: 1\n\ndata: 2\n\n"
    assert server.connections == 1


async def test_closing_a_response_wakes_its_reader(serve: Serve, connect: Connect) -> None:
    async def hanging(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(5)

    client = connect((await serve(hanging)).url)
    resp = await client.request("POST", "/mcp", {}, b"{}")
    assert await resp.read_some() == b"data: 1\n\n"
    reader = asyncio.create_task(resp.read_some())
    await asyncio.sleep(0.01)
    resp.close()  # e.g. the client of a relayed stream went away
    with pytest.raises(ConnectionLost) as lost:
        await asyncio.wait_for(reader, 1)
    assert not lost.value.before_response
    await asyncio.sleep(0.01)
    assert client.open_connections == 0 and client.in_use == 0
    with pytest.raises(ConnectionLost):  # and reading a released response never touches the connection
        await resp.read_some()


async def test_a_body_without_length_ends_when_the_server_closes(serve: Serve, connect: Connect) -> None:
    async def old_style(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>bad")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b" gateway</html>")
        await writer.drain()
        writer.close()

    client = connect((await serve(old_style)).url)
    async with await client.request("POST", "/mcp", {}, b"{}") as resp:
        assert resp.status == 502
        assert await resp.read() == b"<html>bad gateway</html>"
    await asyncio.sleep(0.01)
    assert client.open_connections == 0


async def test_a_body_cut_short_is_connection_lost(serve: Serve, connect: Connect) -> None:
    async def cut(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    client = connect((await serve(cut)).url)
    resp = await client.request("POST", "/mcp", {}, b"{}")
    with pytest.raises(ConnectionLost) as lost:
        await resp.read()
    assert not lost.value.before_response
    resp.release()
    assert client.in_use == 0


async def test_idle_connections_older_than_idle_timeout_are_not_reused(
    serve: Serve, connect: Connect
) -> None:
    server = await serve(echo_handler)
    client = connect(server.url, idle_timeout=0.1)
    for expected in (1, 2):
        async with await client.request("POST", "/mcp", {}, b"{}") as resp:
            assert await resp.read() == b'{"n": %d}' % expected
    assert server.connections == 1
    await asyncio.sleep(0.2)
    async with await client.request("POST", "/mcp", {}, b"{}") as resp:
        assert await resp.read() == b'{"n": 1}'  # first request on a new connection
    assert server.connections == 2 and client.open_connections == 1


async def test_drain_keeps_the_connection(serve: Serve, connect: Connect) -> None:
    async def handler(reader: Reader, writer: Writer, number: int) -> None:
        writer.write(STREAM_HEAD + chunk(b"data: result\n\n"))
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server = await serve(handler)
    client = connect(server.url)
    for _ in range(2):
        resp = await client.request("POST", "/mcp", {}, b"{}")
        assert await resp.read_some() == b"data: result\n\n"
        await resp.drain(1.0)
        assert client.in_use == 0
    assert server.connections == 1


async def test_a_finished_response_never_reads_from_its_reused_connection(
    serve: Serve, connect: Connect
) -> None:
    server = await serve(echo_handler)
    client = connect(server.url)
    first = await client.request("POST", "/mcp", {}, b"{}")
    assert await first.read() == b'{"n": 1}'  # read to the end: the connection went back to the client
    second = await client.request("POST", "/mcp", {}, b"{}")
    await asyncio.sleep(0.01)  # the second answer has arrived on the same connection
    assert await first.read_some() == b"" and await first.read() == b""  # a stray read of the first...
    assert await second.read() == b'{"n": 2}'  # ...takes nothing from the second
    assert server.connections == 1
