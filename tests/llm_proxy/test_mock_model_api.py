"""The mock model API itself: both shapes, deterministic usage, tool use, failures, keys, its command line."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import pytest

from examples.servers.mock_model_api import MockModelApi, MockOptions
from tests.llm_proxy.conftest import free_port

pytestmark = pytest.mark.anyio
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def client(**options: Any) -> tuple[MockModelApi, httpx.AsyncClient]:
    api = MockModelApi(MockOptions(**options))
    return api, httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://mock")


def sse(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]


async def test_messages_are_deterministic_with_predictable_usage() -> None:
    _api, http = client(reply_words=4)
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    raw = orjson.dumps(body)
    async with http:
        first = (await http.post("/v1/messages", content=raw)).json()
        second = (await http.post("/v1/messages", content=raw)).json()
    assert first == second
    assert first["content"] == [{"type": "text", "text": "Hello from the mock"}]
    assert first["usage"] == {
        "input_tokens": len(raw) // 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 4,
    }


async def test_stream_carries_usage_in_start_and_delta_and_cache_tokens_when_asked() -> None:
    _api, http = client(cache_read_tokens=100, cache_write_tokens=20)
    body = {
        "model": "m",
        "stream": True,
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with http:
        events = sse((await http.post("/v1/messages", json=body)).text)
    assert [e["type"] for e in events][:3] == ["message_start", "ping", "content_block_start"]
    assert events[0]["message"]["usage"]["cache_read_input_tokens"] == 100
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["usage"]["output_tokens"] == 10 and delta["usage"]["cache_creation_input_tokens"] == 20
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "Hello from the mock model API. This reply is deterministic."


async def test_tool_use_when_the_prompt_names_a_tool_then_the_result_is_quoted() -> None:
    _api, http = client()
    tools = [{"name": "mcp__gw__filesystem__list_directory", "input_schema": {"type": "object"}}]
    ask = {"role": "user", "content": 'Use mcp__gw__filesystem__list_directory {"path": "."} please'}
    async with http:
        reply = (
            await http.post("/v1/messages", json={"model": "m", "tools": tools, "messages": [ask]})
        ).json()
        assert reply["stop_reason"] == "tool_use"
        call = reply["content"][-1]
        assert call["type"] == "tool_use" and call["input"] == {"path": "."}
        result = {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "content": [{"type": "text", "text": "a.txt b.txt"}],
                }
            ],
        }
        messages = [ask, {"role": "assistant", "content": reply["content"]}, result]
        final = (
            await http.post("/v1/messages", json={"model": "m", "tools": tools, "messages": messages})
        ).json()
    assert final["content"][0]["text"] == "The tool returned: a.txt b.txt"


async def test_openai_shape_with_tool_calls_and_usage_chunk() -> None:
    _api, http = client()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = {
        "model": "gpt-4o-mini",
        "tools": tools,
        "messages": [{"role": "user", "content": 'get_weather {"city": "Oslo"}'}],
    }
    async with http:
        whole = (await http.post("/v1/chat/completions", json=body)).json()
        streamed = sse(
            (
                await http.post(
                    "/v1/chat/completions",
                    json={**body, "stream": True, "stream_options": {"include_usage": True}},
                )
            ).text
        )
        plain = (await http.post("/v1/chat/completions", json={**body, "stream": True})).text
    call = whole["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    assert streamed[-1]["choices"] == []
    assert streamed[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert '"usage"' not in plain and plain.endswith("data: [DONE]\n\n")


async def test_failures_keys_and_listing() -> None:
    api, http = client(fail_status=529, fail_count=1, api_key="pk")
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with http:
        assert (await http.post("/v1/messages", json=body)).status_code == 401
        overloaded = await http.post("/v1/messages", json=body, headers={"x-api-key": "pk"})
        assert overloaded.status_code == 529 and overloaded.json()["error"]["type"] == "overloaded_error"
        assert (await http.post("/v1/messages", json=body, headers={"x-api-key": "pk"})).status_code == 200
        assert (
            await http.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer pk"})
        ).status_code == 200
        assert (await http.get("/v1/models", headers={"x-api-key": "pk"})).json()["data"][0][
            "type"
        ] == "model"
        counted = await http.post("/v1/messages/count_tokens", json=body, headers={"x-api-key": "pk"})
        assert counted.json()["input_tokens"] > 0
        assert (await http.head("/")).status_code == 200
        assert (await http.post("/v1/messages", content=b"{", headers={"x-api-key": "pk"})).status_code == 400
    assert api.failures == 1 and "pk" not in overloaded.text


def test_command_line_serves_on_loopback() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.servers.mock_model_api", "--port", str(port), "--reply-words", "3"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                reply = httpx.post(
                    f"http://127.0.0.1:{port}/v1/messages",
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                )
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert reply.json()["content"][0]["text"] == "Hello from the"
    finally:
        proc.terminate()
        proc.wait(10)
