"""The stream meter reads the same usage however a stream is cut into chunks."""

from __future__ import annotations

import random

import orjson
import pytest

from examples.servers.mock_model_api import Reply, anthropic_events
from llm_proxy.usage import StreamMeter, usage_from_body
from policies.pricing import Usage

USAGE = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 300,
    "cache_read_input_tokens": 4000,
    "output_tokens": 57,
    "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
}
STREAM = b"".join(
    anthropic_events(
        "msg_1", "claude-sonnet-4-5", Reply("a b c d", "tool", "toolu_1", {"x": "y" * 500}, 57), USAGE
    )
)
EXPECTED = Usage(12, 57, 4000, 300, 100)


def cuts(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, start = [], 0
    while start < len(data):
        size = rng.choice([1, 2, 7, 64, 300, 5000])
        pieces.append(data[start : start + size])
        start += size
    return pieces


@pytest.mark.parametrize("seed", range(20))
def test_anthropic_usage_is_the_same_for_any_chunking(seed: int) -> None:
    meter = StreamMeter(openai=False)
    for piece in cuts(STREAM, seed):
        meter.feed(piece)
    assert meter.usage == EXPECTED and meter.model == "claude-sonnet-4-5" and meter.error_type is None


def test_byte_by_byte_and_whole() -> None:
    for pieces in ([STREAM], [STREAM[i : i + 1] for i in range(len(STREAM))]):
        meter = StreamMeter(openai=False)
        for piece in pieces:
            meter.feed(piece)
        assert meter.usage == EXPECTED


def test_openai_usage_chunk_and_in_stream_errors() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 60}}
    chunks = [
        b'data: {"id":"c","choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n',
        b'data: {"id":"c","model":"gpt-4o-mini","choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n",
        b"data: [DONE]\n\n",
    ]
    meter = StreamMeter(openai=True)
    for piece in cuts(b"".join(chunks), 3):
        meter.feed(piece)
    assert meter.usage == Usage(input_tokens=40, output_tokens=9, cache_read_tokens=60)
    broken = StreamMeter(openai=False)
    broken.feed(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n')
    assert broken.error_type == "overloaded_error"


def test_whole_bodies() -> None:
    body = orjson.dumps({"model": "claude-haiku-4-5", "usage": USAGE})
    assert usage_from_body(body, openai=False) == (EXPECTED, "claude-haiku-4-5")
    assert usage_from_body(b"not json", openai=False) == (Usage(), None)


def test_event_names_quoted_inside_text_are_not_events() -> None:
    text = 'event: message_delta\ndata: {"usage":{"output_tokens":999999}}\n\nevent: error'
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    quoting = b"event: content_block_delta\ndata: " + orjson.dumps(delta) + b"\n\n"
    at = STREAM.index(b"event: content_block_delta")
    tricky = STREAM[:at] + quoting + STREAM[at:]
    assert tricky.count(b"event: message_delta") == 2 and tricky.count(b"event: error") == 1
    for pieces in ([tricky], cuts(tricky, 7)):
        meter = StreamMeter(openai=False)
        for piece in pieces:
            meter.feed(piece)
        assert meter.usage == EXPECTED and meter.error_type is None
