"""A stream that ends without the provider's final usage is still paid for: an estimate from what was relayed.

Each case drives the real app (over a loopback socket, or in memory for the gateway
stopping) against the mock model API, cuts the stream one way (client gone,
provider broken off, provider silent past its timeout, gateway stopping), and
checks the ledger row, the budget spend and the tokens-per-minute window against
the documented estimator: output = ceil(UTF-8 bytes of relayed output / 3), input =
what the provider reported, else request body bytes // 3 + 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from examples.servers.mock_model_api import MockModelApi
from gateway_common.db import make_engine
from llm_proxy.ledger import ModelRequest
from policies.pricing import ESTIMATE_BYTES_PER_TOKEN
from tests.llm_proxy.conftest import KEY_ALICE, FakeClock, Proxy, mock_api, proxy_config, start_proxy
from tests.schema_fixtures import load_ddl

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]
GUARD = 20.0
"""A deadlock guard only; no assertion depends on time."""
WORDS = 40
CUT = 26
"""Text deltas relayed before the stream is cut."""
PRICING = {
    "models": {
        "claude-*": {"input_per_mtok": 1000, "output_per_mtok": 1000},
        "gpt-*": {"input_per_mtok": 1000, "output_per_mtok": 1000},
    }
}
"""$0.001 per token: costs follow from the tokens exactly."""
ANTHROPIC_HEADERS = {"x-api-key": KEY_ALICE, "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"authorization": f"Bearer {KEY_ALICE}"}
ANTHROPIC_BODY = orjson.dumps(
    {
        "model": "claude-haiku-4-5",
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me something long."}],
    }
)
OPENAI_BODY = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me something long."}],
    }
)
TPM_KEY = "rl:key:alice:tokens_per_minute"


@contextlib.contextmanager
def holding(api: MockModelApi, after_events: int) -> Iterator[None]:
    """The mock stops after ``after_events`` stream events until the block ends (even when it fails)."""
    api.hold, api.hold_after_events = asyncio.Event(), after_events
    try:
        yield
    finally:
        api.hold.set()


def config_for(url: str, **provider: Any) -> dict[str, Any]:
    """alice has a daily budget and a tokens-per-minute limit (both far off): both must be charged."""
    config = proxy_config(
        url,
        pricing=PRICING,
        budgets={"virtual_key_overrides": [{"id": "alice", "daily_limit_usd": 1000}]},
    )
    config["virtual_keys"][0]["rate_limit"] = {"tokens_per_minute": 10**9}
    config["providers"][0].update(provider)
    config["providers"].append(
        {"name": "oa", "kind": "openai-compatible", "base_url": f"{url}/v1", **provider}
    )
    config["routes"].append({"match": "gpt-*", "provider": "oa"})
    return config


# -- what the client saw -------------------------------------------------------------------------


def anthropic_events(raw: bytes) -> list[dict[str, Any]]:
    found = []
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                found.append(orjson.loads(line[6:]))
    return found


def anthropic_text_deltas(raw: bytes) -> list[str]:
    return [
        e["delta"]["text"]
        for e in anthropic_events(raw)
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"
    ]


def openai_chunks(raw: bytes) -> list[dict[str, Any]]:
    found = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: {"):
            found.append(orjson.loads(block[6:]))
    return found


def openai_contents(raw: bytes) -> list[str]:
    return [c["choices"][0]["delta"]["content"] for c in openai_chunks(raw) if c.get("choices")]


def estimate(pieces: list[str]) -> int:
    """The documented estimator: UTF-8 bytes of relayed output / ESTIMATE_BYTES_PER_TOKEN, rounded up."""
    return math.ceil(sum(len(p.encode()) for p in pieces) / ESTIMATE_BYTES_PER_TOKEN)


# -- what the gateway charged --------------------------------------------------------------------


async def only_row(proxy: Proxy) -> ModelRequest:
    rows: list[ModelRequest] = []
    while not rows:  # the row is submitted once the gateway has noticed the cut and settled
        rows = await proxy.ledger()
        if not rows:
            await asyncio.sleep(0.01)
    [row] = rows
    return row


async def assert_charged(proxy: Proxy, row: ModelRequest, clock: FakeClock) -> None:
    """Cost from the row's tokens; the budget spent exactly that (nothing left reserved); tpm counted them."""
    assert row.cost_usd == pytest.approx((row.input_tokens + row.output_tokens) / 1000)
    [budget] = [s for s in await proxy.llm.budget_status() if s["budget"] == "key:alice"]
    assert budget["spent_usd"] == pytest.approx(row.cost_usd) and budget["reserved_usd"] == 0
    window = await proxy.llm.limiter.store.window_used(TPM_KEY, 60.0, clock())
    assert window == row.input_tokens + row.output_tokens


async def read_until(
    proxy: Proxy, path: str, body: bytes, headers: dict[str, str], enough: Callable[[bytes], bool]
) -> bytes:
    """A real HTTP client that reads the stream until ``enough`` and then closes its connection."""
    received = b""
    async with (
        httpx.AsyncClient() as client,
        client.stream("POST", f"{proxy.url}{path}", content=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            received += chunk
            if enough(received):
                break
    return received


# -- Anthropic -----------------------------------------------------------------------------------


async def test_a_client_that_disconnects_after_n_text_deltas_is_charged_the_estimate(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        mock_api(reply_words=WORDS) as (api, url),
        start_proxy(config_for(url), tmp_path, clock=clock, socket=True) as proxy,
    ):
        with holding(api, 3 + CUT):  # message_start, ping, content_block_start, CUT text deltas
            async with asyncio.timeout(GUARD):
                received = await read_until(
                    proxy,
                    "/v1/messages",
                    ANTHROPIC_BODY,
                    ANTHROPIC_HEADERS,
                    lambda raw: len(anthropic_text_deltas(raw)) == CUT,
                )
                row = await only_row(proxy)
                await assert_charged(proxy, row, clock)
    deltas = anthropic_text_deltas(received)
    start = anthropic_events(received)[0]["message"]["usage"]
    assert start["output_tokens"] == 1  # all message_start says about output
    assert row.output_tokens == estimate(deltas) > 1
    assert row.status == "cancelled" and row.usage_estimated is True
    assert row.input_tokens == start["input_tokens"]  # the provider's own input count is kept
    assert row.cost_usd > 0


async def test_a_provider_that_breaks_off_mid_stream_is_charged_the_estimate(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        mock_api(reply_words=WORDS, cut_after_events=3 + CUT) as (_api, url),
        start_proxy(config_for(url), tmp_path, clock=clock, socket=True) as proxy,
    ):
        response = await proxy.client.post("/v1/messages", content=ANTHROPIC_BODY, headers=ANTHROPIC_HEADERS)
        assert response.status_code == 200
        row = await only_row(proxy)
        await assert_charged(proxy, row, clock)
    events = anthropic_events(response.content)
    assert events[-1]["type"] == "error" and "broke off the stream" in events[-1]["error"]["message"]
    assert row.output_tokens == estimate(anthropic_text_deltas(response.content)) > 1
    assert (row.status, row.usage_estimated) == ("upstream_error", True)
    assert row.input_tokens == events[0]["message"]["usage"]["input_tokens"]


async def test_a_provider_silent_past_its_timeout_mid_stream_is_charged_the_estimate(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        mock_api(reply_words=WORDS) as (api, url),
        start_proxy(config_for(url, timeout=0.3), tmp_path, clock=clock, socket=True) as proxy,
    ):
        with holding(api, 3 + CUT):
            async with asyncio.timeout(GUARD):
                response = await proxy.client.post(
                    "/v1/messages", content=ANTHROPIC_BODY, headers=ANTHROPIC_HEADERS
                )
            row = await only_row(proxy)
            await assert_charged(proxy, row, clock)
    assert anthropic_events(response.content)[-1]["error"]["message"].endswith("timed out")
    assert row.output_tokens == estimate(anthropic_text_deltas(response.content)) > 1
    assert (row.status, row.usage_estimated) == ("timeout", True)


async def drive_in_memory(
    proxy: Proxy, path: str, body: bytes, headers: dict[str, str]
) -> tuple[asyncio.Task[None], list[bytes], Callable[[Callable[[bytes], bool]], Awaitable[None]]]:
    """Run the app on one request in a task, as a server would; the caller may cancel it (a stopping gateway)."""
    sent: list[bytes] = []
    changed = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a client that stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))
            changed.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {"llm": proxy.llm},
    }
    task = asyncio.create_task(proxy.app(scope, receive, send))

    async def until(enough: Callable[[bytes], bool]) -> None:
        while not enough(b"".join(sent)):
            changed.clear()
            await changed.wait()

    return task, sent, until


async def test_a_stream_cut_by_the_gateway_stopping_is_charged_the_estimate(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        mock_api(reply_words=WORDS) as (api, url),
        start_proxy(config_for(url), tmp_path, clock=clock) as proxy,
    ):
        with holding(api, 3 + CUT):
            async with asyncio.timeout(GUARD):
                task, sent, until = await drive_in_memory(
                    proxy, "/v1/messages", ANTHROPIC_BODY, ANTHROPIC_HEADERS
                )
                await until(lambda raw: len(anthropic_text_deltas(raw)) == CUT)
                task.cancel()  # what a server does to its requests when it stops
                with pytest.raises(asyncio.CancelledError):
                    await task
                row = await only_row(proxy)
                await assert_charged(proxy, row, clock)
    assert row.output_tokens == estimate(anthropic_text_deltas(b"".join(sent))) > 1
    assert (row.status, row.error, row.usage_estimated) == ("cancelled", "the gateway is stopping", True)


# -- OpenAI-compatible ---------------------------------------------------------------------------


def openai_input_estimate(body: bytes) -> int:
    """Documented: with no usage chunk, input is the request body's bytes // 3 + 1."""
    return len(body) // ESTIMATE_BYTES_PER_TOKEN + 1


async def test_openai_client_that_disconnects_mid_stream_is_charged_the_estimate(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        mock_api(reply_words=WORDS) as (api, url),
        start_proxy(config_for(url), tmp_path, clock=clock, socket=True) as proxy,
    ):
        with holding(api, 1 + CUT):  # the role chunk, then CUT content chunks
            async with asyncio.timeout(GUARD):
                received = await read_until(
                    proxy,
                    "/v1/chat/completions",
                    OPENAI_BODY,
                    OPENAI_HEADERS,
                    lambda raw: len(openai_chunks(raw)) == 1 + CUT,
                )
                row = await only_row(proxy)
                await assert_charged(proxy, row, clock)
    assert row.output_tokens == estimate(openai_contents(received)) > 1
    assert (row.status, row.usage_estimated) == ("cancelled", True)
    assert row.input_tokens == openai_input_estimate(OPENAI_BODY)


async def test_openai_provider_that_breaks_off_is_charged_the_estimate(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        mock_api(reply_words=WORDS, cut_after_events=1 + CUT) as (_api, url),
        start_proxy(config_for(url), tmp_path, clock=clock, socket=True) as proxy,
    ):
        response = await proxy.client.post(
            "/v1/chat/completions", content=OPENAI_BODY, headers=OPENAI_HEADERS
        )
        assert response.status_code == 200
        row = await only_row(proxy)
        await assert_charged(proxy, row, clock)
    assert "broke off the stream" in openai_chunks(response.content)[-1]["error"]["message"]
    assert row.output_tokens == estimate(openai_contents(response.content)) > 1
    assert (row.status, row.usage_estimated) == ("upstream_error", True)
    assert row.input_tokens == openai_input_estimate(OPENAI_BODY)


async def test_openai_provider_silent_past_its_timeout_is_charged_the_estimate(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        mock_api(reply_words=WORDS) as (api, url),
        start_proxy(config_for(url, timeout=0.3), tmp_path, clock=clock, socket=True) as proxy,
    ):
        with holding(api, 1 + CUT):
            async with asyncio.timeout(GUARD):
                response = await proxy.client.post(
                    "/v1/chat/completions", content=OPENAI_BODY, headers=OPENAI_HEADERS
                )
            row = await only_row(proxy)
            await assert_charged(proxy, row, clock)
    assert row.output_tokens == estimate(openai_contents(response.content)) > 1
    assert (row.status, row.usage_estimated) == ("timeout", True)


async def test_openai_tool_call_arguments_count_towards_the_estimate(tmp_path: Path) -> None:
    arguments = {"path": "src/" + "deep/" * 40, "depth": 2}
    body = orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "tools": [{"type": "function", "function": {"name": "list_directory", "parameters": {}}}],
            "messages": [
                {"role": "user", "content": "Please list_directory " + orjson.dumps(arguments).decode()}
            ],
        }
    )
    clock = FakeClock()
    async with (
        mock_api() as (api, url),
        start_proxy(config_for(url), tmp_path, clock=clock, socket=True) as proxy,
    ):
        with holding(api, 1 + 2 + 1):  # role chunk, "Calling list_directory.", the tool call
            async with asyncio.timeout(GUARD):
                received = await read_until(
                    proxy,
                    "/v1/chat/completions",
                    body,
                    OPENAI_HEADERS,
                    lambda raw: len(openai_chunks(raw)) == 4,
                )
                row = await only_row(proxy)
    deltas = [c["choices"][0]["delta"] for c in openai_chunks(received)]
    relayed = [d.get("content") or "" for d in deltas]
    relayed += [call["function"]["arguments"] for d in deltas for call in d.get("tool_calls", [])]
    assert orjson.loads(relayed[-1]) == arguments
    assert row.output_tokens == estimate(relayed) and row.usage_estimated is True


# -- complete streams keep the provider's usage ------------------------------------------------------


async def test_complete_streams_keep_the_providers_exact_usage(tmp_path: Path) -> None:
    clock = FakeClock()
    async with (
        mock_api(reply_words=WORDS) as (_api, url),
        start_proxy(config_for(url), tmp_path, clock=clock, socket=True) as proxy,
    ):
        anthropic = await proxy.client.post("/v1/messages", content=ANTHROPIC_BODY, headers=ANTHROPIC_HEADERS)
        openai = await proxy.client.post("/v1/chat/completions", content=OPENAI_BODY, headers=OPENAI_HEADERS)
        whole = await proxy.messages()
        refused = await proxy.messages(model="gpt-unknown-but-routed-elsewhere", stream=True)
        rows = await proxy.ledger()
    final = next(e for e in anthropic_events(anthropic.content) if e["type"] == "message_delta")["usage"]
    usage = openai_chunks(openai.content)[-1]["usage"]
    assert whole.status_code == 200 and refused.status_code == 404
    by_endpoint = {(r.endpoint, r.stream, r.status): r for r in rows}
    streamed = by_endpoint[("messages", True, "ok")]
    assert (streamed.input_tokens, streamed.output_tokens, streamed.usage_estimated) == (
        final["input_tokens"],
        final["output_tokens"],
        False,
    )
    chat = by_endpoint[("chat.completions", True, "ok")]
    assert (chat.input_tokens, chat.output_tokens, chat.usage_estimated) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        False,
    )
    assert by_endpoint[("messages", False, "ok")].usage_estimated is False
    assert by_endpoint[("messages", True, "denied")].usage_estimated is None  # nothing answered


async def test_a_ledger_from_an_earlier_release_gains_the_usage_estimated_column(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")  # the database start_proxy uses
    # The first release's schema, as it made it (no usage_estimated, no migrations); the current
    # schema minus one column would hold columns of later revisions no such database has.
    load_ddl(engine, "release_52cf063")
    engine.dispose()
    async with mock_api() as (_api, url), start_proxy(config_for(url), tmp_path) as proxy:
        assert (
            await proxy.client.post("/v1/messages", content=ANTHROPIC_BODY, headers=ANTHROPIC_HEADERS)
        ).status_code == 200
        [row] = await proxy.ledger()
    assert row.usage_estimated is False
