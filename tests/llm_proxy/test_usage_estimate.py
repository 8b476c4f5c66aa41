"""The stream meter's estimate for a stream that ended without its final usage (see llm_proxy.usage)."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from examples.servers.mock_model_api import Reply, anthropic_events
from llm_proxy.usage import KEEP_BYTES, StreamMeter
from policies.pricing import ESTIMATE_BYTES_PER_TOKEN, Usage

USAGE = {
    "input_tokens": 12,
    "cache_read_input_tokens": 4000,
    "cache_creation_input_tokens": 0,
    "output_tokens": 57,
}
REQUEST_BYTES = 900


def sse(event: str, data: dict[str, object]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def delta(kind: str, field: str, value: str) -> bytes:
    payload = {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: value}}
    return sse("content_block_delta", payload)


def tokens(*pieces: str) -> int:
    """The documented estimator, from the pieces themselves."""
    return math.ceil(sum(len(p.encode()) for p in pieces) / ESTIMATE_BYTES_PER_TOKEN)


def cuts(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, start = [], 0
    while start < len(data):
        size = rng.choice([1, 2, 7, 64, 300, 5000])
        pieces.append(data[start : start + size])
        start += size
    return pieces


def fed(meter: StreamMeter, pieces: list[bytes]) -> StreamMeter:
    for piece in pieces:
        meter.feed(piece)
    return meter


THINKING, TEXT, TOOL_INPUT = "Let me think… über", "Grüße aus dem Modell — 你好", '{"path": "src"'
START = anthropic_events("msg_1", "claude-sonnet-4-5", Reply(""), USAGE)[0]
CUT_STREAM = b"".join(
    [
        START,
        delta("thinking_delta", "thinking", THINKING),
        delta("signature_delta", "signature", "EqQBCgIYAhIM" * 20),  # not output text
        delta("text_delta", "text", TEXT),
        delta("input_json_delta", "partial_json", TOOL_INPUT),
        sse("ping", {"type": "ping"}),
    ]
)


@pytest.mark.parametrize("seed", range(10))
def test_a_cut_anthropic_stream_is_estimated_from_its_output_deltas(seed: int) -> None:
    meter = fed(StreamMeter(openai=False), cuts(CUT_STREAM, seed))
    usage, estimated = meter.settle(REQUEST_BYTES, 1000)
    assert estimated
    assert usage == Usage(
        input_tokens=12, output_tokens=tokens(THINKING, TEXT, TOOL_INPUT), cache_read_tokens=4000
    )  # input and cache as message_start reported them


def test_a_complete_stream_is_exact() -> None:
    whole = anthropic_events("msg_1", "claude-sonnet-4-5", Reply("a b c d"), USAGE)
    meter = fed(StreamMeter(openai=False), whole)
    assert meter.settle(REQUEST_BYTES, 1000) == (Usage(12, 57, 4000, 0), False)


def test_the_estimate_is_at_most_max_tokens_and_never_below_what_was_reported() -> None:
    assert fed(StreamMeter(openai=False), [CUT_STREAM]).settle(REQUEST_BYTES, 3)[0].output_tokens == 3
    reported_more = START.replace(b'"output_tokens":1', b'"output_tokens":500')
    meter = fed(StreamMeter(openai=False), [reported_more, delta("text_delta", "text", TEXT)])
    assert meter.settle(REQUEST_BYTES, 1000)[0].output_tokens == 500
    nothing = fed(StreamMeter(openai=False), [START])
    assert nothing.settle(REQUEST_BYTES, 1000) == (Usage(12, 1, 4000, 0), True)


def test_a_stream_cut_before_any_usage_estimates_input_from_the_request_body() -> None:
    meter = fed(StreamMeter(openai=False), [delta("text_delta", "text", TEXT)])
    usage, estimated = meter.settle(REQUEST_BYTES, None)
    assert estimated and usage == Usage(REQUEST_BYTES // ESTIMATE_BYTES_PER_TOKEN + 1, tokens(TEXT))


def test_a_long_stream_is_counted_in_batches_and_its_memory_stays_bounded() -> None:
    words = [f" word{i}é" for i in range(60_000)]
    stream = START + b"".join(delta("text_delta", "text", w) for w in words)
    assert len(stream) > 10 * KEEP_BYTES
    meter = StreamMeter(openai=False)
    for piece in cuts(stream, 1):
        meter.feed(piece)
        assert meter._kept_bytes <= KEEP_BYTES + 5000  # at most one chunk over the bound
    assert meter.settle(REQUEST_BYTES, None) == (Usage(12, tokens(*words), 4000, 0), True)


def openai_chunk(choices: list[dict[str, object]], **extra: object) -> bytes:
    return (
        b"data: " + orjson.dumps({"id": "c", "model": "gpt-4o-mini", "choices": choices, **extra}) + b"\n\n"
    )


def content(text: str, finish: str | None = None, **extra: object) -> bytes:
    return openai_chunk([{"index": 0, "delta": {"content": text}, "finish_reason": finish}], **extra)


def test_a_cut_openai_stream_counts_content_reasoning_and_tool_arguments() -> None:
    calls = [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "ls", "arguments": TOOL_INPUT}}
    ]
    stream = b"".join(
        [
            openai_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}], usage=None),
            openai_chunk([{"index": 0, "delta": {"reasoning_content": THINKING}}], usage=None),
            content(TEXT, usage=None),
            openai_chunk([{"index": 0, "delta": {"tool_calls": calls}}], usage=None),
        ]
    )
    for seed in range(5):
        usage, estimated = fed(StreamMeter(openai=True), cuts(stream, seed)).settle(REQUEST_BYTES, None)
        assert estimated
        assert usage == Usage(
            REQUEST_BYTES // ESTIMATE_BYTES_PER_TOKEN + 1, tokens(THINKING, TEXT, TOOL_INPUT)
        )


def test_openai_usage_chunk_is_final_and_cumulative_usage_is_only_a_floor() -> None:
    final = openai_chunk([], usage={"prompt_tokens": 40, "completion_tokens": 9})
    assert fed(StreamMeter(openai=True), [content(TEXT), final]).settle(REQUEST_BYTES, None) == (
        Usage(40, 9),
        False,
    )
    # A provider that reports usage on every chunk: final with the finish_reason, a floor before it.
    running = [content(TEXT, usage={"prompt_tokens": 40, "completion_tokens": n}) for n in (1, 2)]
    cut = fed(StreamMeter(openai=True), running)
    assert cut.settle(REQUEST_BYTES, None) == (Usage(40, max(2, tokens(TEXT, TEXT))), True)
    done = content("", "stop", usage={"prompt_tokens": 40, "completion_tokens": 3})
    assert fed(StreamMeter(openai=True), [*running, done]).settle(REQUEST_BYTES, None) == (
        Usage(40, 3),
        False,
    )
