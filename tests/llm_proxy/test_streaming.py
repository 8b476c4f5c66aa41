"""Streams over real loopback sockets: byte-identical passthrough, no buffering, cut-offs on either side."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.llm_proxy.conftest import KEY_ALICE, mock_api, proxy_config, serve, start_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]
GUARD = 20.0
"""A deadlock guard only (a buffering proxy would hang); no assertion depends on time."""

TOOL_REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64000,
    "stream": True,
    "tools": [{"name": "list_directory", "description": "ls", "input_schema": {"type": "object"}}],
    "messages": [{"role": "user", "content": 'Please use list_directory {"path": "src", "depth": 2}'}],
}
HEADERS = {"x-api-key": KEY_ALICE, "anthropic-version": "2023-06-01", "content-type": "application/json"}


def events(raw: bytes) -> list[tuple[str, Any]]:
    parsed = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        name, data = block.split(b"\n", 1)
        parsed.append((name.decode().removeprefix("event: "), orjson.loads(data.removeprefix(b"data: "))))
    return parsed


async def test_stream_events_pass_through_identical_and_in_order(tmp_path: Path) -> None:
    body = orjson.dumps(TOOL_REQUEST)
    async with mock_api() as (_api, url), start_proxy(proxy_config(url), tmp_path, socket=True) as proxy:
        async with httpx.AsyncClient() as client:
            direct = await client.post(f"{url}/v1/messages", content=body, headers=HEADERS)
            through = await client.post(f"{proxy.url}/v1/messages", content=body, headers=HEADERS)
        assert direct.status_code == through.status_code == 200
        assert through.content == direct.content
        names = [name for name, _ in events(through.content)]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        deltas = [data["delta"] for name, data in events(through.content) if name == "content_block_delta"]
        partial = "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta")
        assert orjson.loads(partial) == {"path": "src", "depth": 2}
        [row] = await proxy.ledger()
        assert row.stream and row.status == "ok" and row.output_tokens > 0


async def test_events_reach_the_client_before_the_upstream_finishes(tmp_path: Path) -> None:
    async with mock_api() as (api, url), start_proxy(proxy_config(url), tmp_path, socket=True) as proxy:
        api.hold = asyncio.Event()
        api.hold_after_events = 4  # message_start, ping, content_block_start, first text delta; then wait
        async with (
            asyncio.timeout(GUARD),
            httpx.AsyncClient() as client,
            client.stream("POST", f"{proxy.url}/v1/messages", json=TOOL_REQUEST, headers=HEADERS) as response,
        ):
            assert response.status_code == 200
            received = b""
            chunks = response.aiter_raw()
            while received.count(b"\n\n") < 4:
                received += await anext(chunks)
            # the upstream is still held: everything above was relayed as it arrived
            assert not api.hold.is_set()
            assert [name for name, _ in events(received)] == [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
            ]
            api.hold.set()
            async for chunk in chunks:
                received += chunk
        assert events(received)[-1][0] == "message_stop"


async def test_a_stream_cut_off_by_the_client_records_usage_so_far(tmp_path: Path) -> None:
    async with mock_api() as (api, url), start_proxy(proxy_config(url), tmp_path, socket=True) as proxy:
        api.hold = asyncio.Event()
        async with asyncio.timeout(GUARD):
            async with (
                httpx.AsyncClient() as client,
                client.stream(
                    "POST", f"{proxy.url}/v1/messages", json=TOOL_REQUEST, headers=HEADERS
                ) as response,
            ):
                received = b""
                async for chunk in response.aiter_raw():
                    received += chunk
                    if received.count(b"\n\n") >= 3:
                        break
            # the client has closed its connection; the upstream is still holding the rest
            rows: list[Any] = []
            while not rows:
                await asyncio.sleep(0.01)
                rows = await proxy.ledger()
            pool = proxy.llm.providers["primary"].pool
            assert (pool.in_use, pool.open_connections) == (0, 0)  # the held upstream stream was closed
        api.hold.set()
        [row] = rows
        start_usage = events(received)[0][1]["message"]["usage"]
        assert row.status == "cancelled" and row.error == "the client closed the stream"
        assert row.input_tokens == start_usage["input_tokens"] > 0
        assert row.output_tokens == 1  # what message_start said so far
        assert row.cost_usd > 0
        status = {s["budget"]: s for s in await proxy.llm.budget_status()}
        assert status == {}  # no budgets here; nothing left reserved either way


async def test_an_upstream_that_breaks_mid_stream_ends_with_an_error_event(tmp_path: Path) -> None:
    async def breaking(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        start = {
            "type": "message_start",
            "message": {"model": "claude-haiku-4-5", "usage": {"input_tokens": 7, "output_tokens": 1}},
        }
        await send(
            {
                "type": "http.response.body",
                "body": b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n",
                "more_body": True,
            }
        )
        raise RuntimeError("upstream crashed mid-stream")

    async with serve(breaking) as url, start_proxy(proxy_config(url), tmp_path, socket=True) as proxy:
        response = await proxy.client.post(
            "/v1/messages", json={**TOOL_REQUEST, "model": "claude-haiku-4-5"}, headers=HEADERS
        )
        assert response.status_code == 200
        last = events(response.content)[-1]
        assert last[0] == "error" and last[1]["error"]["type"] == "api_error"
        assert "broke off the stream" in last[1]["error"]["message"]
        [row] = await proxy.ledger()
        assert (row.status, row.input_tokens, row.error_type) == ("upstream_error", 7, "api_error")


async def test_openai_stream_gets_a_usage_chunk_and_is_costed(tmp_path: Path) -> None:
    async with mock_api() as (api, url):
        config = proxy_config(url)
        config["providers"].append({"name": "oa", "kind": "openai-compatible", "base_url": f"{url}/v1"})
        config["routes"].append({"match": "gpt-*", "provider": "oa"})
        async with start_proxy(config, tmp_path, socket=True) as proxy:
            body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            response = await proxy.client.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY_ALICE}"}
            )
            assert response.status_code == 200
            chunks = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
            assert chunks[-1] == "[DONE]"
            usage = orjson.loads(chunks[-2])["usage"]
            assert orjson.loads(api.received[-1].body)["stream_options"] == {"include_usage": True}
            [row] = await proxy.ledger()
            assert (row.endpoint, row.provider, row.input_tokens, row.output_tokens) == (
                "chat.completions",
                "oa",
                usage["prompt_tokens"],
                usage["completion_tokens"],
            )
            assert row.cost_usd > 0 and row.price_source == "genai-prices:openai/gpt-4o-mini"
