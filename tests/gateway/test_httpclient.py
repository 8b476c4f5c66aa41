"""The fast pool's own behaviour, beyond the contract every client passes (test_http_contract.py):
how it hands over what has arrived, when it knows a body ended, its request encoding, and Happy Eyeballs."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway_common.http.pool import HttpPool, request_target
from tests.fixtures.raw_http import STREAM_HEAD, RawServer, chunk, echo_handler, raw_servers


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    async with raw_servers() as start:
        yield start


@pytest.mark.anyio
async def test_at_eof_is_known_when_the_last_chunk_arrives_with_the_end(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    """The relay sends a stream's last chunk and its end in one write when the end has already arrived."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(chunk(b"data: 2\n\n") + b"0\r\n\r\n")
        await writer.drain()

    server = await serve(handler)
    pool = HttpPool(server.url)
    resp = await pool.request("POST", "/mcp", {}, b"{}")
    assert await resp.read_some() == b"data: 1\n\n"
    assert not resp.at_eof()
    await asyncio.sleep(0.1)
    assert await resp.read_some() == b"data: 2\n\n"
    assert resp.at_eof()
    assert await resp.read_some() == b""
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
