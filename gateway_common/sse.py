"""Server-Sent Events, read and written the one way the whole gateway does it.

Reading follows the HTML standard's event-stream parser: lines end with LF, CR LF or a lone CR (a
CR at the end of one chunk and its LF at the start of the next are one line ending); a leading
byte-order mark is dropped; ``data`` lines are joined with LF; ``event``, ``id`` (ignored when it
holds NUL) and ``retry`` (digits only) are kept; lines starting with ``:`` are comments; a blank line
dispatches the event (none when it had no ``data``); an event cut off by the end of the stream is
not dispatched. `SseParser` is fed bytes as they arrive; `iter_sse_data` reads an HTTP response.

Writing: `encode_event` and `encode_comment`, LF-framed. A ``data`` payload with line breaks of its
own is written as several ``data:`` lines, so it comes back whole.

The model proxy's `llm_proxy.usage.StreamMeter` keeps its own byte scan for speed (it looks at only
the few events that carry usage) and uses `normalize_line_endings` from here for CR-framed streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

from gateway_common.http.base import LineSource

__all__ = [
    "LineSource",
    "SseEvent",
    "SseParser",
    "encode_comment",
    "encode_event",
    "iter_sse_data",
    "iter_sse_events",
    "normalize_line_endings",
]
BOM = b"\xef\xbb\xbf"


class SseEvent(NamedTuple):
    data: bytes
    event: str = "message"
    id: str | None = None
    """The stream's last event id when this event was dispatched (it carries over, per the standard)."""
    retry: int | None = None
    """The latest reconnection time the server asked for, in milliseconds."""


def normalize_line_endings(chunk: bytes, cr_pending: bool) -> tuple[bytes, bool]:
    """``chunk`` with CR LF and lone CR turned into LF, given whether the previous chunk ended in CR
    (then a leading LF here belongs to that line ending). Returns the new chunk and whether it ends
    in CR. For a chunk with no CR (the usual case) this is one C-level scan."""
    if cr_pending and chunk[:1] == b"\n":
        chunk = chunk[1:]
    if b"\r" not in chunk:
        return chunk, False
    ends_in_cr = chunk[-1:] == b"\r"
    return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), ends_in_cr


class SseParser:
    """Incremental event-stream parser: `feed` bytes as they arrive, get the events they complete."""

    __slots__ = ("_cr", "_data", "_event", "_head", "_id", "_partial", "_retry", "_started")

    def __init__(self) -> None:
        self._started = False
        self._head = b""
        self._cr = False
        self._partial: list[bytes] = []
        self._data: list[bytes] = []
        self._event = b""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if not self._started:
            if self._head:
                chunk = self._head + chunk
            if len(chunk) < len(BOM) and BOM.startswith(chunk):
                self._head = chunk  # maybe a BOM split across chunks
                return []
            self._started, self._head = True, b""
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM) :]
        if self._cr or b"\r" in chunk:  # (inlined `normalize_line_endings`)
            if self._cr and chunk[:1] == b"\n":
                chunk = chunk[1:]
            self._cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n")
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            if chunk:
                self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = b"".join(self._partial)
            self._partial = []
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        events: list[SseEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    name = self._event
                    events.append(
                        tuple.__new__(
                            SseEvent,
                            (
                                data[0] if len(data) == 1 else b"\n".join(data),
                                _event_name(name) if name else "message",
                                self._id,
                                self._retry,
                            ),
                        )
                    )
                    data = self._data = []
                self._event = b""
            elif line.startswith(b"data:"):  # the usual lines first
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                self._event = line[7:] if line[6:7] == b" " else line[6:]
            elif line[0] != 0x3A:  # a line starting with ":" is a comment
                self._field(line)
        return events

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\x00" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)


_EVENT_NAMES: dict[bytes, str] = {}


def _event_name(raw: bytes) -> str:
    name = _EVENT_NAMES.get(raw)
    if name is None:
        name = raw.decode("utf-8", "replace")
        if len(_EVENT_NAMES) < 256:
            _EVENT_NAMES[raw] = name
    return name


def _reader(source: LineSource) -> Callable[[], Awaitable[bytes]]:
    """Whole chunks when the source offers them (`LineReader.read_chunk`): the parser cuts lines itself."""
    read_chunk: Callable[[], Awaitable[bytes]] | None = getattr(source, "read_chunk", None)
    return read_chunk if read_chunk is not None else source.readline


async def iter_sse_events(source: LineSource) -> AsyncIterator[SseEvent]:
    """Every event of a stream read from ``source`` (e.g. ``HttpResponse.lines()``)."""
    parser = SseParser()
    read = _reader(source)
    while piece := await read():
        for event in parser.feed(piece):
            yield event


async def iter_sse_data(source: LineSource) -> AsyncIterator[bytes]:
    """The ``data`` of every event of a stream (event names, ids and comments are read and dropped)."""
    parser = SseParser()
    read = _reader(source)
    while piece := await read():
        for event in parser.feed(piece):
            yield event.data


_EVENT_LINES: dict[str, bytes] = {}


def _event_line(event: str) -> bytes:
    line = _EVENT_LINES.get(event)
    if line is None:
        if "\r" in event or "\n" in event:
            raise ValueError("an SSE event name cannot contain CR or LF")
        line = b"event: " + event.encode() + b"\n"
        if len(_EVENT_LINES) < 64:
            _EVENT_LINES[event] = line
    return line


def encode_event(
    data: bytes, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One LF-framed event. ``data`` may hold line breaks (each line becomes a ``data:`` line)."""
    head = _event_line(event) if event else b""
    if id is not None:
        if "\r" in id or "\n" in id or "\x00" in id:
            raise ValueError("an SSE id cannot contain CR, LF or NUL")
        head += b"id: " + id.encode() + b"\n"
    if retry is not None:
        head += b"retry: %d\n" % retry
    if b"\n" in data or b"\r" in data:
        lines = normalize_line_endings(data, False)[0].split(b"\n")
        return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
    return head + b"data: " + data + b"\n\n"


def encode_comment(text: str) -> bytes:
    """A comment line (a keep-alive ping, say): ignored by readers, resets idle timers on the way."""
    if "\r" in text or "\n" in text:
        raise ValueError("an SSE comment cannot contain CR or LF")
    return b": " + text.encode() + b"\n\n"
