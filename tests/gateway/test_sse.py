"""The one SSE module: the parser against the HTML standard's rules, whatever the framing and chunking,
and the emitter round-tripping through it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_common.http.lines import LineReader
from gateway_common.sse import (
    SseEvent,
    SseParser,
    encode_comment,
    encode_event,
    iter_sse_data,
    iter_sse_events,
    normalize_line_endings,
)


def parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline: bytes) -> None:
    stream = newline.join([b"event: message_start", b'data: {"a":1}', b"", b'data: {"b":2}', b"", b""])
    assert parse(stream) == [SseEvent(b'{"a":1}', "message_start"), SseEvent(b'{"b":2}')]


def test_a_cr_ending_one_chunk_and_its_lf_starting_the_next_are_one_line_ending() -> None:
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SseEvent(b"a\nb")]
    # ...while a lone CR followed by a chunk with no LF is a line ending of its own
    assert parse(b"data: a\r", b"\r") == [SseEvent(b"a")]


def test_the_fields() -> None:
    stream = (
        b": a comment\n"
        b"retry: 3000\n"
        b"id: 7\n"
        b"event: update\n"
        b"data\n"  # a field with no colon: the whole line is the name, the value is empty
        b"data:no space\n"
        b"data:  two spaces\n"  # only one space is dropped
        b"unknown: ignored\n"
        b"\n"
        b"retry: soon\n"  # not digits: ignored
        b"id: bad\x00id\n"  # holds NUL: ignored
        b"data: next\n"
        b"\n"
        b"event: empty\n"
        b"\n"  # no data: nothing is dispatched, and the event name does not carry over
        b"data: last\n"
        b"\n"
    )
    assert parse(stream) == [
        SseEvent(b"\nno space\n two spaces", "update", "7", 3000),
        SseEvent(b"next", "message", "7", 3000),
        SseEvent(b"last", "message", "7", 3000),
    ]


def test_a_leading_byte_order_mark_is_dropped_once_even_split() -> None:
    bom = b"\xef\xbb\xbf"
    assert parse(bom + b"data: x\n\n") == [SseEvent(b"x")]
    assert parse(bom[:1], bom[1:2], bom[2:] + b"data: x\n\n") == [SseEvent(b"x")]
    assert parse(b"data: x\n\n" + bom + b"data: y\n\n") == [SseEvent(b"x")]  # mid-stream: part of a name


def test_an_event_cut_off_by_the_end_of_the_stream_is_not_dispatched() -> None:
    parser = SseParser()
    assert parser.feed(b"data: whole\n\ndata: cut off\n") == [SseEvent(b"whole")]


def test_normalize_line_endings() -> None:
    assert normalize_line_endings(b"a\nb", False) == (b"a\nb", False)
    assert normalize_line_endings(b"a\r\nb\rc\r", False) == (b"a\nb\nc\n", True)
    assert normalize_line_endings(b"\nx", True) == (b"x", False)
    assert normalize_line_endings(b"\nx", False) == (b"\nx", False)


def test_the_emitter() -> None:
    assert encode_event(b'{"a":1}', "message") == b'event: message\ndata: {"a":1}\n\n'
    assert encode_event(b"x") == b"data: x\n\n"
    assert encode_event(b"x", "e", id="1", retry=5) == b"event: e\nid: 1\nretry: 5\ndata: x\n\n"
    assert encode_event(b"one\r\ntwo\rthree\nfour") == b"data: one\ndata: two\ndata: three\ndata: four\n\n"
    assert encode_comment("ping") == b": ping\n\n"
    for bad in ("a\nb", "a\rb"):
        with pytest.raises(ValueError, match="CR"):
            encode_event(b"x", bad)
        with pytest.raises(ValueError, match="CR"):
            encode_comment(bad)


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["message", "message_start", "content_block_delta", "error"]),
        st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"|")),
        st.integers(min_value=1, max_value=3),  # data lines
    ),
    max_size=6,
)


@given(
    events=EVENTS,
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    comments=st.booleans(),
)
def test_any_framing_and_any_chunking_give_the_same_events(
    events: list[tuple[str, bytes, int]], newline: bytes, cuts: list[int], comments: bool
) -> None:
    stream = b""
    expected = []
    for name, data, lines in events:
        if comments:
            stream += b": keep-alive" + newline
        stream += b"event: " + name.encode() + newline
        stream += b"".join(b"data: " + data + newline for _ in range(lines))
        stream += newline
        expected.append(SseEvent(b"\n".join([data] * lines), name))
    points = sorted({0, len(stream), *(min(c, len(stream)) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert parse(*chunks) == expected
    # and what the emitter writes comes back whole
    emitted = b"".join(encode_event(e.data, e.event) for e in expected)
    assert parse(emitted) == expected


class Pieces:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def read_some(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


@pytest.mark.anyio
async def test_iter_sse_data_over_response_lines() -> None:
    body = Pieces([b"data: a\r", b"\ndata: b\r\r", b"event: x\rdata: c\r", b"\r"])
    assert [d async for d in iter_sse_data(LineReader(body.read_some))] == [b"a\nb", b"c"]
    body = Pieces([b'data: {"big": "', b"y" * 100_000, b'"}\n', b"\n"])
    [event] = [e async for e in iter_sse_events(LineReader(body.read_some))]
    assert len(event.data) == 100_011


@pytest.mark.anyio
@given(cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=10))
async def test_line_reader_cuts_at_every_line_ending(cuts: list[int]) -> None:
    body = b"one\ntwo\r\nthree\rfour\n\nlast"
    points = sorted({0, len(body), *(min(c, len(body)) for c in cuts)})
    reader = LineReader(Pieces([body[a:b] for a, b in itertools.pairwise(points)]).read_some)
    lines = []
    while piece := await reader.readline():
        lines.append(piece)
    assert b"".join(lines) == body
    for piece in lines[:-1]:  # each piece ends at a line ending (a CR LF may come as CR, then LF)
        assert piece.endswith((b"\n", b"\r"))
        assert b"\n" not in piece[:-1] and b"\r" not in piece[:-1]


@pytest.mark.anyio
async def test_line_reader_hands_whole_chunks_to_a_parser_after_lines() -> None:
    reader = LineReader(Pieces([b"data: a\ndata: b", b"\n\n", b"data: c\n\n"]).read_some)
    assert await reader.readline() == b"data: a\n"
    assert await reader.read_chunk() == b"data: b"  # what was buffered, then chunks as they come
    assert await reader.read_chunk() == b"\n\n"
    assert [e.data async for e in iter_sse_events(reader)] == [b"c"]
    assert await reader.read_chunk() == b"" and await reader.readline() == b""
