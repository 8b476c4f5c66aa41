"""Reading token usage from provider responses, whole or streamed.

Streams are relayed chunk by chunk as they arrive; a meter only looks at each
chunk on the way (it never holds a chunk back). Anthropic reports usage in
``message_start`` (input and cache tokens) and ``message_delta`` (cumulative
output, and lately the input fields again): the latest value of each field
wins, so nothing is counted twice. OpenAI-compatible streams report usage in a
final chunk when ``stream_options.include_usage`` is set.
"""

from __future__ import annotations

from typing import Any

import orjson

from policies.pricing import Usage

_ANTHROPIC_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def anthropic_usage(fields: dict[str, Any]) -> Usage:
    creation = fields.get("cache_creation")
    one_hour = 0
    if isinstance(creation, dict):
        one_hour = _int(creation.get("ephemeral_1h_input_tokens")) or 0
    return Usage(
        input_tokens=_int(fields.get("input_tokens")) or 0,
        output_tokens=_int(fields.get("output_tokens")) or 0,
        cache_read_tokens=_int(fields.get("cache_read_input_tokens")) or 0,
        cache_write_tokens=_int(fields.get("cache_creation_input_tokens")) or 0,
        cache_write_1h_tokens=one_hour,
    )


def openai_usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    prompt = _int(usage.get("prompt_tokens")) or 0
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    cached = min(cached or 0, prompt)
    return Usage(
        input_tokens=prompt - cached,
        output_tokens=_int(usage.get("completion_tokens")) or 0,
        cache_read_tokens=cached,
    )


def usage_from_body(body: bytes, openai: bool) -> tuple[Usage, str | None]:
    """Usage and served model from a whole (non-streamed) response body."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Usage(), None
    if not isinstance(payload, dict):
        return Usage(), None
    model = payload.get("model")
    model = model if isinstance(model, str) else None
    raw = payload.get("usage")
    if openai:
        return openai_usage(raw), model
    return (anthropic_usage(raw) if isinstance(raw, dict) else Usage()), model


_ANTHROPIC_MARKERS = (b"event: message_", b"event: error")
_OPENAI_MARKERS = (b'"usage":{', b'"usage": {', b'"error"')


class StreamMeter:
    """Splits a relayed SSE byte stream into events and reads the ones that carry usage."""

    __slots__ = ("_tail", "error_type", "fields", "model", "openai")

    def __init__(self, openai: bool) -> None:
        self.openai = openai
        self._tail = b""
        self.fields: dict[str, Any] = {}
        self.model: str | None = None
        self.error_type: str | None = None
        """Set when the provider sent an error event inside the stream."""

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        last = data.rfind(b"\n\n")
        if last == -1:
            self._tail = data
            return
        self._tail = data[last + 2 :]
        # Most events (text and tool-input deltas) carry nothing to read: substring scans in C jump
        # from one event that may matter to the next, in stream order, and only those are split out.
        markers = _OPENAI_MARKERS if self.openai else _ANTHROPIC_MARKERS
        pos = 0  # always the start of an event
        while pos < last:
            found = -1
            for marker in markers:
                at = data.find(marker, pos, last)
                if at != -1 and (found == -1 or at < found):
                    found = at
            if found == -1:
                return
            before = data.rfind(b"\n\n", pos, found)
            start = before + 2 if before != -1 else pos
            end = data.find(b"\n\n", found)
            self._event(data, start, end)
            pos = end + 2

    @property
    def usage(self) -> Usage:
        if self.openai:
            return openai_usage(self.fields.get("usage"))
        return anthropic_usage(self.fields)

    def _event(self, data: bytes, start: int, end: int) -> None:
        if self.openai:
            if data.find(b'"usage":{', start, end) == -1 and data.find(b'"usage": {', start, end) == -1:
                if data.find(b'"error"', start, end) != -1:
                    self._openai_error(data[start:end])
                return
            payload = _data_json(data[start:end])
            if payload is not None:
                if isinstance(payload.get("usage"), dict):
                    self.fields["usage"] = payload["usage"]
                if isinstance(payload.get("model"), str):
                    self.model = payload["model"]
            return
        if data.startswith(b"event: content_block_", start) or data.startswith(b"event: ping", start):
            return  # the bulk of a stream: nothing to read
        if data.startswith(b"event: message_start", start):
            payload = _data_json(data[start:end])
            message = payload.get("message") if payload else None
            if isinstance(message, dict):
                if isinstance(message.get("model"), str):
                    self.model = message["model"]
                self._merge(message.get("usage"))
        elif data.startswith(b"event: message_delta", start):
            payload = _data_json(data[start:end])
            if payload is not None:
                self._merge(payload.get("usage"))
        elif data.startswith(b"event: error", start):
            payload = _data_json(data[start:end])
            error = payload.get("error") if payload else None
            self.error_type = str(error.get("type")) if isinstance(error, dict) else "api_error"

    def _merge(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for name in _ANTHROPIC_FIELDS:
            value = _int(usage.get(name))
            if value is not None:
                self.fields[name] = value
        if isinstance(usage.get("cache_creation"), dict):
            self.fields["cache_creation"] = usage["cache_creation"]

    def _openai_error(self, event: bytes) -> None:
        payload = _data_json(event)
        error = payload.get("error") if payload else None
        if isinstance(error, dict):
            self.error_type = str(error.get("type") or "api_error")


def _data_json(event: bytes) -> dict[str, Any] | None:
    """The JSON object on the ``data:`` line(s) of one SSE event."""
    lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    try:
        payload = orjson.loads(b"\n".join(lines))
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def first_event_is_error(chunk: bytes) -> bool:
    """Whether a stream opens with an error event (the provider failed before any content)."""
    return chunk.lstrip().startswith(b"event: error") or chunk.lstrip().startswith(b'data: {"error"')
