"""Provider streams framed with CR LF or a lone CR (both legal SSE) are costed exactly like LF-framed
ones, however they are cut into chunks, and relayed to the client byte for byte."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.servers.mock_model_api import MockModelApi, MockOptions, Reply, anthropic_events
from llm_proxy.usage import StreamMeter
from tests.llm_proxy.conftest import KEY_ALICE, proxy_config, serve, start_proxy

ANTHROPIC_USAGE = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 300,
    "cache_read_input_tokens": 4000,
    "output_tokens": 57,
    "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
}
ANTHROPIC = anthropic_events(
    "msg_1", "claude-sonnet-4-5", Reply("a b c d é", "tool", "toolu_1", {"x": "y" * 300}, 57), ANTHROPIC_USAGE
)
OPENAI_USAGE = {"prompt_tokens": 100, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 60}}
OPENAI = [
    b'data: {"id":"c","model":"gpt-4o-mini","choices":[{"delta":{"content":"hi there"}}],"usage":null}\n\n',
    b'data: {"id":"c","model":"gpt-4o-mini","choices":[{"delta":{"content":"!"},"finish_reason":"stop"}]}\n\n',
    b'data: {"id":"c","model":"gpt-4o-mini","choices":[],"usage":' + orjson.dumps(OPENAI_USAGE) + b"}\n\n",
    b"data: [DONE]\n\n",
]
NEWLINES = st.sampled_from([b"\r\n", b"\r"])


def meter_for(stream: bytes, cuts: list[int], openai: bool) -> StreamMeter:
    points = sorted({0, len(stream), *(min(c, len(stream)) for c in cuts)})
    meter = StreamMeter(openai)
    for a, b in itertools.pairwise(points):
        meter.feed(stream[a:b])
    return meter


def reading(meter: StreamMeter, request_bytes: int = 500) -> tuple[Any, ...]:
    return (meter.usage, meter.model, meter.final, meter.error_type, meter.settle(request_bytes, 4096))


@pytest.mark.parametrize("openai", [False, True])
@given(newline=NEWLINES, cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=40), data=st.data())
def test_cr_framed_streams_are_costed_like_lf_ones_whatever_the_chunking(
    openai: bool, newline: bytes, cuts: list[int], data: st.DataObject
) -> None:
    events = OPENAI if openai else ANTHROPIC
    # The whole stream, and one cut off after some events (the estimate from what was relayed).
    kept = data.draw(st.integers(min_value=1, max_value=len(events)), label="events relayed")
    for stream in (b"".join(events), b"".join(events[:kept])):
        expected = reading(meter_for(stream, [], openai))
        assert reading(meter_for(stream.replace(b"\n", newline), cuts, openai)) == expected


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_a_cr_at_the_end_of_every_chunk(newline: bytes) -> None:
    stream = b"".join(ANTHROPIC).replace(b"\n", newline)
    cuts = [i + 1 for i in range(len(stream)) if stream[i : i + 1] == b"\r"]  # every chunk ends in CR
    assert reading(meter_for(stream, cuts, False)) == reading(meter_for(b"".join(ANTHROPIC), [], False))


def test_events_with_other_fields_first_or_no_space_are_read() -> None:
    relaxed = b"".join(ANTHROPIC).replace(b"event: message_", b"id: 1\nevent:message_")
    assert reading(meter_for(relaxed, [], False)) == reading(meter_for(b"".join(ANTHROPIC), [], False))


def reframing(api: MockModelApi, newline: bytes) -> Any:
    """The mock model API with its streams re-framed, each body chunk also cut in two after its first CR."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def reframe(message: dict[str, Any]) -> None:
            body = message.get("body", b"")
            if message["type"] != "http.response.body" or b"\n\n" not in body:
                await send(message)
                return
            body = body.replace(b"\n", newline)
            cut = body.find(b"\r") + 1
            await send({**message, "body": body[:cut], "more_body": True})
            await send({**message, "body": body[cut:]})

        await api(scope, receive, reframe)

    return app


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env")
@pytest.mark.parametrize("openai", [False, True])
async def test_the_gateway_relays_cr_framed_streams_byte_for_byte_and_costs_them(
    tmp_path: Path, openai: bool
) -> None:
    if openai:
        path, model, headers = "/v1/chat/completions", "gpt-4o-mini", {"authorization": f"Bearer {KEY_ALICE}"}
    else:
        path, model, headers = "/v1/messages", "claude-sonnet-4-5", {"x-api-key": KEY_ALICE}
    body = orjson.dumps(
        {"model": model, "max_tokens": 300, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    rows = []
    for newline in (b"\n", b"\r\n", b"\r"):
        api = MockModelApi(MockOptions())
        async with serve(reframing(api, newline)) as url:
            config = proxy_config(url)
            config["providers"].append({"name": "oa", "kind": "openai-compatible", "base_url": f"{url}/v1"})
            config["routes"].append({"match": "gpt-*", "provider": "oa"})
            async with start_proxy(config, tmp_path / repr(newline), socket=True) as proxy:
                async with httpx.AsyncClient() as client:
                    through = await client.post(f"{proxy.url}{path}", content=body, headers=headers)
                    sent = api.received[-1].body  # what the gateway sent, asked again directly
                    direct = await client.post(f"{url}{path}", content=sent)
                assert through.status_code == direct.status_code == 200
                assert through.content == direct.content  # byte for byte, in the provider's framing
                assert newline in through.content
                if newline == b"\n":
                    assert b"\r" not in through.content
                [row] = await proxy.ledger()
                rows.append(
                    (row.status, row.input_tokens, row.output_tokens, row.usage_estimated, row.cost_usd)
                )
    assert rows[0][0] == "ok" and rows[0][2] > 0 and rows[0][3] is False
    assert rows[1] == rows[0] and rows[2] == rows[0]
