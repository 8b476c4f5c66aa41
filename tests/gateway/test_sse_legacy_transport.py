"""The HTTP+SSE transport against a hand-written server: where it agrees to send messages, the
2024-11-05 handshake, batches, and how it fails (no endpoint, no stream, a forgotten session)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mcp_gateway.upstream.base import UpstreamError, UpstreamRequestTimeout, UpstreamUnreachable
from mcp_gateway.upstream.sse_legacy import EndpointRefused, endpoint_target
from mcp_gateway.upstream.supervisor import make_connection
from policies.servers import SseServerConfig
from tests.fixtures.asgi_server import serve
from tests.fixtures.sse_raw import RawSseServer

STREAM = "http://127.0.0.1:8000/sse?token=s3cret"


@pytest.mark.parametrize(
    ("announced", "target"),
    [
        ("/messages/?session_id=ab12", "/messages/?session_id=ab12"),  # what the SDK's server sends
        ("messages?session_id=1", "/messages?session_id=1"),  # relative to the stream's path
        ("http://127.0.0.1:8000/m?s=1", "/m?s=1"),
        ("HTTP://127.0.0.1:8000/m", "/m"),
        (" /padded ", "/padded"),
    ],
)
def test_an_endpoint_on_the_streams_origin_is_used(announced: str, target: str) -> None:
    assert endpoint_target(STREAM, announced.encode()) == target


def test_default_ports_are_the_same_origin() -> None:
    assert endpoint_target("https://mcp.example.com/sse", b"https://mcp.example.com:443/msg") == "/msg"
    assert endpoint_target("http://mcp.example.com:80/sse", b"http://MCP.example.com/msg") == "/msg"


@pytest.mark.parametrize(
    ("announced", "why"),
    [
        ("http://evil.example/m", "another origin (http://evil.example)"),
        ("//evil.example/m", "another origin (http://evil.example)"),
        ("http://127.0.0.1:8001/m", "another origin (http://127.0.0.1:8001)"),  # same host, other port
        ("https://127.0.0.1:8000/m", "another origin (https://127.0.0.1:8000)"),  # other scheme
        ("http://localhost:8000/m", "another origin (http://localhost:8000)"),  # other name, same machine
        ("http://127.0.0.1:8000@evil.example/m", "another origin (http://evil.example)"),
        ("http://127.0.0.1:99999/m", "an invalid port"),
        ("", "no usable URL"),
        ("/a b", "no usable URL"),
        ("/a\x00b", "no usable URL"),
    ],
)
def test_an_endpoint_elsewhere_is_refused(announced: str, why: str) -> None:
    with pytest.raises(EndpointRefused) as refused:
        endpoint_target(STREAM, announced.encode())
    assert why in str(refused.value)
    assert "s3cret" not in str(refused.value)  # the stream URL's query may hold a token


def test_a_refusal_quotes_a_bounded_endpoint() -> None:
    with pytest.raises(EndpointRefused) as refused:
        endpoint_target(STREAM, b"/" + b"x" * 5000 + b" y")
    assert len(str(refused.value)) < 300


def sse_config(port: int, **extra: Any) -> SseServerConfig:
    return SseServerConfig(name="raw", url=f"http://127.0.0.1:{port}/sse", **extra)


@pytest.mark.anyio
async def test_a_2024_11_05_server_with_batches_and_headers() -> None:
    raw = RawSseServer()
    async with serve(raw.app) as port:
        conn = make_connection(sse_config(port, headers={"Authorization": "Bearer up-token"}))
        try:
            await conn.open(5)
            assert conn.protocol_version == "2024-11-05"
            assert conn.server_info == {"name": "raw", "version": "0.0.1"}
            tools = await conn.request("tools/list", None, timeout=5)
            assert [t["name"] for t in tools["result"]["tools"]] == ["echo"]
            called = await conn.request(
                "tools/call", {"name": "echo", "arguments": {"text": "hi"}}, timeout=5
            )
            assert called["result"]["content"] == [{"type": "text", "text": "hi"}]  # came as a batch of one
            assert await conn.request("ping", None, timeout=5) == {"jsonrpc": "2.0", "id": 4, "result": {}}
        finally:
            await conn.close()
        assert conn.closed_reason == "closed by the gateway"
    assert [g["authorization"] for g in raw.gets] == ["Bearer up-token"]
    assert raw.gets[0]["accept"] == "text/event-stream"
    assert [p["method"] for p in raw.posts] == [
        "initialize",
        "notifications/initialized",
        "tools/list",
        "tools/call",
        "ping",
    ]
    assert raw.posts[0]["params"]["protocolVersion"] == "2025-11-25"  # offered; the server chose 2024-11-05


@pytest.mark.anyio
async def test_an_endpoint_on_another_origin_gets_nothing() -> None:
    """The announced endpoint is a live server on another port: it must never see a message or
    the configured token."""
    elsewhere = RawSseServer()
    async with serve(elsewhere.app) as other_port:
        raw = RawSseServer(endpoint=f"http://127.0.0.1:{other_port}/messages?session_id=x")
        async with serve(raw.app) as port:
            conn = make_connection(sse_config(port, headers={"Authorization": "Bearer up-token"}))
            try:
                with pytest.raises(UpstreamError) as refused:
                    await conn.open(5)
            finally:
                await conn.close()
    assert f"another origin (http://127.0.0.1:{other_port})" in str(refused.value)
    assert f"the origin of http://127.0.0.1:{port}/sse" in str(refused.value)
    assert conn.is_closed
    assert elsewhere.posts == [] and elsewhere.gets == [] and raw.posts == []


@pytest.mark.anyio
async def test_a_stream_that_never_names_its_endpoint_fails_the_start() -> None:
    raw = RawSseServer(endpoint=None)
    async with serve(raw.app) as port:
        conn = make_connection(sse_config(port))
        try:
            with pytest.raises(UpstreamError) as silent:
                await conn.open(0.3)
        finally:
            await conn.close()
    assert str(silent.value) == f"http://127.0.0.1:{port}/sse announced no endpoint within 0.3 s"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "content_type", "why"),
    [
        (405, "text/plain", "HTTP 405 (text/plain"),  # e.g. a streamable-HTTP URL given as sse
        (200, "application/json", "HTTP 200 (application/json"),
        (307, "text/plain", "redirects are not followed"),
    ],
)
async def test_an_answer_that_is_not_an_event_stream_fails_the_start(
    status: int, content_type: str, why: str
) -> None:
    raw = RawSseServer(stream_status=status, stream_type=content_type)
    async with serve(raw.app) as port:
        conn = SseServerConfig(name="raw", url=f"http://127.0.0.1:{port}/sse?token=s3cret")
        connection = make_connection(conn)
        try:
            with pytest.raises(UpstreamError) as refused:
                await connection.open(5)
        finally:
            await connection.close()
    assert why in str(refused.value) and f"from http://127.0.0.1:{port}/sse" in str(refused.value)
    assert "s3cret" not in str(refused.value)


@pytest.mark.anyio
async def test_a_session_the_server_forgot_ends_the_connection() -> None:
    raw = RawSseServer()
    async with serve(raw.app) as port:
        conn = make_connection(sse_config(port))
        try:
            await conn.open(5)
            raw.forget()
            with pytest.raises(UpstreamUnreachable) as forgotten:  # never read: a retry is safe
                await conn.request("tools/call", {"name": "echo", "arguments": {}}, timeout=5)
            assert "HTTP 404" in str(forgotten.value)
            assert conn.is_closed  # the supervisor reconnects
        finally:
            await conn.close()


@pytest.mark.anyio
async def test_an_unanswered_request_times_out_and_is_cancelled_upstream() -> None:
    raw = RawSseServer()
    async with serve(raw.app) as port:
        conn = make_connection(sse_config(port))
        try:
            await conn.open(5)
            with pytest.raises(UpstreamRequestTimeout):
                await conn.request("tools/call", {"name": "never", "arguments": {}}, timeout=0.2)
            with anyio.fail_after(5):
                while not any(p.get("method") == "notifications/cancelled" for p in raw.posts):
                    await anyio.sleep(0.02)
            assert not conn.is_closed  # one slow call does not end the session
        finally:
            await conn.close()
    call = next(p for p in raw.posts if p.get("method") == "tools/call")
    cancelled = next(p for p in raw.posts if p.get("method") == "notifications/cancelled")
    assert cancelled["params"] == {"requestId": call["id"], "reason": "timed out in the gateway"}
