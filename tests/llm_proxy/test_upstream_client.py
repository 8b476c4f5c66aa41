"""The provider connection: silent providers, unreachable ones, base URL paths, connections given back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.llm_proxy.conftest import KEY_ALICE, keys_config, mock_api, proxy_config, serve, start_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]
HEADERS = {"x-api-key": KEY_ALICE, "anthropic-version": "2023-06-01"}
START = {
    "type": "message_start",
    "message": {"model": "claude-haiku-4-5", "usage": {"input_tokens": 7, "output_tokens": 1}},
}


def stalling_provider(release: asyncio.Event, stall: str = "stream") -> Any:
    """Stalls until ``release`` is set: before its headers, before its body, or after message_start."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        if stall == "headers":
            await release.wait()
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
        if stall == "body":
            await release.wait()
        event = b"event: message_start\ndata: " + orjson.dumps(START) + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def events(raw: bytes) -> list[tuple[str, Any]]:
    found = []
    for block in raw.split(b"\n\n"):
        if block.strip():
            name, data = block.split(b"\n", 1)
            found.append((name.decode().removeprefix("event: "), orjson.loads(data.removeprefix(b"data: "))))
    return found


async def test_a_stream_that_goes_silent_ends_after_the_provider_timeout(tmp_path: Path) -> None:
    release = asyncio.Event()
    async with serve(stalling_provider(release)) as url:
        config = proxy_config(url)
        config["providers"][0]["timeout"] = 0.3  # the longest wait for the provider's next bytes
        async with start_proxy(config, tmp_path) as proxy:
            async with asyncio.timeout(10):
                response = await proxy.messages(stream=True)
            assert response.status_code == 200
            name, data = events(response.content)[-1]
            assert name == "error" and data["error"]["type"] == "api_error"
            assert data["error"]["message"] == "provider 'primary' broke off the stream: timed out"
            [row] = await proxy.ledger()
            assert (row.status, row.input_tokens, row.error_type) == ("timeout", 7, "api_error")
            pool = proxy.llm.providers["primary"].pool
            assert (pool.in_use, pool.open_connections) == (0, 0)
        release.set()


@contextlib.contextmanager
def swallowing_listener() -> Iterator[str]:
    """A loopback port whose accept queue is full: the kernel drops new SYNs, connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = [socket.socket() for _ in range(2)]
    for filler in fillers:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(listener.getsockname())
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        for sock in (*fillers, listener):
            sock.close()


async def test_a_provider_that_never_accepts_times_out_into_the_fallback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llm_proxy")
    with swallowing_listener() as hung_url:
        async with mock_api() as (_backup, backup_url):
            config = proxy_config(hung_url)
            config["providers"][0]["connect_timeout_seconds"] = 0.2
            config["providers"].append({"name": "backup", "kind": "anthropic", "base_url": backup_url})
            config["routes"] = [
                {"match": "claude-*", "provider": "primary", "fallbacks": [{"provider": "backup"}]}
            ]
            async with start_proxy(config, tmp_path) as proxy, asyncio.timeout(10):
                response = await proxy.messages()
                assert response.status_code == 200
                [row] = await proxy.ledger()
                assert (row.provider, row.attempts) == ("backup", 2)
    assert any("(cannot connect (timed out))" in r.getMessage() for r in caplog.records)


async def test_base_url_paths_are_kept_and_bodies_pass_through_untouched(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    answer = b'{ "id": "msg_1",  "type": "message", "model": "claude-haiku-4-5", "content": [],\n'
    answer += b' "usage": {"input_tokens": 3, "output_tokens": 2}, "odd":  "\xc3\xbc" }'

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        seen.append(
            {"path": scope["path"], "query": scope["query_string"], "headers": dict(scope["headers"])}
        )
        headers = [(b"content-type", b"application/json"), (b"request-id", b"req_up_1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async with serve(recording) as url:
        config = keys_config()
        config["providers"] = [
            {"name": "a", "kind": "anthropic", "base_url": f"{url}/anthropic/"},
            {"name": "o", "kind": "openai-compatible", "base_url": f"{url}/openai/v1"},
        ]
        config["routes"] = [{"match": "claude-*", "provider": "a"}, {"match": "gpt-*", "provider": "o"}]
        async with start_proxy(config, tmp_path) as proxy:
            response = await proxy.client.post(
                "/v1/messages?beta=true",
                json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []},
                headers=HEADERS,
            )
            assert response.status_code == 200 and response.content == answer
            assert response.headers["request-id"] == "req_up_1"
            response = await proxy.client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": []},
                headers={"authorization": f"Bearer {KEY_ALICE}"},
            )
            assert response.status_code == 200 and response.content == answer
    assert [(s["path"], s["query"]) for s in seen] == [
        ("/anthropic/v1/messages", b"beta=true"),
        ("/openai/v1/chat/completions", b""),
    ]
    for request in seen:
        assert request["headers"][b"host"] == url.removeprefix("http://").encode()
        assert b"accept-encoding" not in request["headers"]  # identity: bodies are relayed byte for byte


@pytest.mark.parametrize("stall", ["headers", "body", "stream"])
async def test_a_cancelled_request_gives_its_provider_connection_back(tmp_path: Path, stall: str) -> None:
    release = asyncio.Event()
    async with serve(stalling_provider(release, stall)) as url:
        async with start_proxy(proxy_config(url), tmp_path) as proxy:
            pool = proxy.llm.providers["primary"].pool
            request = asyncio.create_task(proxy.messages(stream=True))
            while pool.open_connections == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the gateway waits in pool.request, try_target or the relay
            request.cancel()  # in memory, the gateway's request task is the client's
            with pytest.raises(asyncio.CancelledError):
                await request
            await asyncio.sleep(0)
            assert (pool.in_use, pool.open_connections) == (0, 0)
            [row] = await proxy.ledger()
            assert row.status == "cancelled"
        release.set()
