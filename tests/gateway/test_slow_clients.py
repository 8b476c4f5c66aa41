"""Slow, idle and surplus clients are bounded (gateway_app.serving), and long streams are not cut.

Real sockets against the real app on uvicorn: the behaviour lives in the HTTP
protocol. Deadlines are short here; the guards around them (fail_after) are many
times longer, so a loaded machine only makes the tests slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
import pytest

from gateway_app import serving
from tests.conftest import RunningGateway, run_gateway

ALICE = "alice-secret-0123456789"
SHORT = 0.5
"""Header and idle deadlines in these tests, seconds."""
GUARD = 4.0
"""Longer than SHORT by far, shorter than uvicorn's own 5 s keep-alive."""


def config(**gateway: Any) -> dict[str, Any]:
    return {
        "gateway": {"header_timeout_seconds": SHORT, "keep_alive_seconds": SHORT, **gateway},
        "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
    }


@contextlib.asynccontextmanager
async def connect(
    gateway: RunningGateway,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    port = int(gateway.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


@pytest.mark.anyio
async def test_a_slow_loris_is_answered_408_and_disconnected_after_the_header_deadline(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with (
        run_gateway(config(keep_alive_seconds=60), tmp_path) as gateway,
        connect(gateway) as (reader, writer),
    ):
        received = b""
        with anyio.fail_after(GUARD * 2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            while not reader.at_eof():
                writer.write(b"a")  # one header byte every 0.2 s, the headers never end
                with contextlib.suppress(TimeoutError):
                    received += await asyncio.wait_for(reader.read(4096), 0.2)
        assert received.startswith(b"HTTP/1.1 408 ")
        body = orjson.loads(received.split(b"\r\n\r\n", 1)[1])
        assert body["error"] == "request_timeout"
        assert "gateway.header_timeout_seconds" in body["message"]
        # The gateway still serves everyone else.
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"{gateway.base}/healthz")).status_code == 200


@pytest.mark.anyio
async def test_a_connection_that_never_sends_anything_is_closed_after_the_idle_timeout(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with run_gateway(config(), tmp_path) as gateway, connect(gateway) as (reader, _):
        with anyio.fail_after(GUARD):
            assert await reader.read() == b""


@pytest.mark.anyio
async def test_a_kept_alive_connection_idle_past_the_timeout_is_closed(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with run_gateway(config(), tmp_path) as gateway, connect(gateway) as (reader, writer):
        writer.write(get("/healthz"))
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers.get("connection") != "close"
        writer.write(get("/healthz"))  # kept alive: a second request on the same connection
        assert (await read_response(reader))[0] == 200
        with anyio.fail_after(GUARD):
            assert await reader.read() == b""


@pytest.mark.anyio
async def test_a_get_stream_open_longer_than_both_deadlines_survives(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with run_gateway(config(), tmp_path) as gateway, httpx2.AsyncClient(timeout=30) as http:
        auth = {"Authorization": f"Bearer {ALICE}"}
        opened = await http.post(
            gateway.url,
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "clientInfo": {"name": "t", "version": "1"}},
            },
            headers={**auth, "Accept": "application/json, text/event-stream"},
        )
        session = opened.headers["mcp-session-id"]
        headers = {**auth, "Mcp-Session-Id": session}
        async with http.stream(
            "GET", gateway.url, headers={**headers, "Accept": "text/event-stream"}
        ) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == ": stream open"
            await asyncio.sleep(SHORT * 4)  # past the header and the idle deadline, nothing sent either way
            # Still open: closing the session ends the stream cleanly (a complete chunked body).
            assert (await http.delete(gateway.url, headers=headers)).status_code == 200
            rest = [line async for line in lines]
        assert all(not line or line.startswith(":") for line in rest)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "method", "shape"),
    [
        ("/healthz", "GET", "plain"),
        ("/mcp", "POST", "plain"),
        ("/v1/messages", "POST", "anthropic"),
        ("/v1/chat/completions", "POST", "openai"),
    ],
)
async def test_over_the_in_flight_cap_a_request_gets_503_with_a_json_body(
    tmp_path: Path,
    keys_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    path: str,
    method: str,
    shape: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway_app.serving")
    async with (
        run_gateway(config(keep_alive_seconds=60, max_requests_in_flight=1), tmp_path) as gateway,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        auth = {"Authorization": f"Bearer {ALICE}"}
        # One long-lived request holds the only slot: a 2026 subscriptions/listen stream.
        listen = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "subscriptions/listen",
            "params": {
                "notifications": {"toolsListChanged": True},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                },
            },
        }
        listen_headers = {
            **auth,
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "subscriptions/listen",
        }
        async with http.stream("POST", gateway.url, json=listen, headers=listen_headers) as stream:
            assert stream.status_code == 200
            refused = await http.request(method, f"{gateway.base}{path}", json={}, headers=auth)
            assert (await http.get(f"{gateway.base}/healthz")).status_code == 503
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        message = {
            "plain": lambda: body["message"],
            "anthropic": lambda: body["error"]["message"],
            "openai": lambda: body["error"]["message"],
        }[shape]()
        assert "limit of 1 requests in flight (gateway.max_requests_in_flight)" in message
        if shape == "anthropic":
            assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
        # One warning for the operator, however many requests were refused meanwhile.
        warnings = [r.getMessage() for r in caplog.records if r.name == "gateway_app.serving"]
        assert len(warnings) == 1 and warnings[0].startswith("refusing requests: 1 in flight")
        # The slot is free again once the stream has ended.
        with anyio.fail_after(GUARD):
            while (await http.get(f"{gateway.base}/healthz")).status_code != 200:
                await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_over_the_connection_cap_the_longest_idle_connection_makes_room(
    tmp_path: Path, keys_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving, "MIN_IDLE_TO_RECLAIM", 0.0)
    async with (
        run_gateway(
            config(keep_alive_seconds=60, header_timeout_seconds=60, max_connections=2), tmp_path
        ) as gateway,
        connect(gateway) as (busy_reader, busy_writer),
        connect(gateway) as (idle_reader, idle_writer),
    ):
        busy_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers under way: not idle
        idle_writer.write(get("/healthz"))
        assert (await read_response(idle_reader))[0] == 200
        await asyncio.sleep(0.05)
        async with connect(gateway) as (reader, writer):
            writer.write(get("/healthz"))
            assert (await read_response(reader))[0] == 200
        with anyio.fail_after(GUARD):
            assert await idle_reader.read() == b""  # the idle one was closed to make room
        busy_writer.write(b"\r\n")
        assert (await read_response(busy_reader))[0] == 200


@pytest.mark.anyio
async def test_over_the_connection_cap_with_nothing_idle_a_request_gets_503_and_the_connection_closes(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with (
        run_gateway(
            config(keep_alive_seconds=60, header_timeout_seconds=60, max_connections=2), tmp_path
        ) as gateway,
        connect(gateway) as (first_reader, first_writer),
        connect(gateway) as (_, second_writer),
    ):
        for writer in (first_writer, second_writer):
            writer.write(b"GET /healthz HTTP/1.1\r\n")  # both mid-request
        await asyncio.sleep(0.05)
        async with connect(gateway) as (reader, writer):
            writer.write(get("/mcp"))
            status, headers, body = await read_response(reader)
            assert status == 503
            assert headers["connection"] == "close" and headers["retry-after"] == "1"
            assert "limit of 2 open connections (gateway.max_connections)" in orjson.loads(body)["message"]
            with anyio.fail_after(GUARD):
                assert await reader.read() == b""
        first_writer.write(b"Host: 127.0.0.1\r\n\r\n")
        assert (await read_response(first_reader))[0] == 200


def test_serve_lifts_the_open_files_limit_to_fit_max_connections() -> None:
    script = (
        "import resource\n"
        "from gateway_app.serving import raise_open_file_limit\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "raise_open_file_limit(1000)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    soft, hard = (int(value) for value in out.stdout.split())
    wanted = 1000 + serving.FILE_LIMIT_MARGIN
    assert soft == (wanted if hard < 0 else min(wanted, hard))
