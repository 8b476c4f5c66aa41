"""Reading token usage from provider responses, whole or streamed.

Streams are relayed chunk by chunk as they arrive; a meter only looks at each
chunk on the way (it never holds a chunk back). Anthropic reports usage in
``message_start`` (input and cache tokens) and ``message_delta`` (cumulative
output, and lately the input fields again): the latest value of each field
wins, so nothing is counted twice. OpenAI-compatible streams report usage in a
final chunk when ``stream_options.include_usage`` is set.

A stream that ends without that final usage (the client went away, the provider
broke off or fell silent, the gateway stopped) is charged an estimate, so that
cutting a stream does not dodge budgets or ``tokens_per_minute``
(`StreamMeter.settle`): output tokens are the UTF-8 bytes of the output the
client was relayed (Anthropic ``text_delta``, ``thinking_delta`` and
``input_json_delta``; OpenAI ``delta.content``, ``refusal``, ``reasoning_content``,
``reasoning`` and ``tool_calls[].function.arguments``) divided by
`ESTIMATE_BYTES_PER_TOKEN` (3, rounded up; real text runs 3.5-4.5 bytes per
token, so the estimate errs high), at most the request's ``max_tokens`` and never
less than the provider already reported. Input tokens are what the provider
reported (Anthropic's ``message_start``); when it reported none (an OpenAI stream
cut before its usage chunk), the request body's bytes divided by the same ratio,
plus one (the rule budgets reserve by).

The meter keeps its fast path: until the final usage arrives it only keeps a
reference to each relayed chunk; the chunks are decoded only when the final usage
never came, or in batches of `KEEP_BYTES` on very long streams (to bound memory).

SSE allows CR LF and lone CR line endings as well as LF: a chunk holding a CR is
normalised to LF for the meter's scan (`gateway_common.sse.normalize_line_endings`,
which carries a CR that ends one chunk over to the next), so such a stream is
costed like an LF one; the client is still relayed the provider's bytes as they
came. An LF-only chunk costs one extra C-level scan for the CR.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from gateway_common.sse import normalize_line_endings
from policies.pricing import ESTIMATE_BYTES_PER_TOKEN, Usage

KEEP_BYTES = 256 * 1024
"""Relayed bytes kept per stream for an estimate before they are decoded and counted."""

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


_ANTHROPIC_MARKERS = (b"event: message_", b"event: error", b"event:message_", b"event:error")
_OPENAI_MARKERS = (b'"usage":{', b'"usage": {', b'"error"')


class StreamMeter:
    """Splits a relayed SSE byte stream into events and reads the ones that carry usage."""

    __slots__ = (
        "_counted",
        "_cr",
        "_kept",
        "_kept_bytes",
        "_tail",
        "error_type",
        "fields",
        "final",
        "model",
        "openai",
    )

    def __init__(self, openai: bool) -> None:
        self.openai = openai
        self._tail = b""
        self._cr = False
        """The last chunk ended in CR: a LF starting the next one belongs to that line ending."""
        self.fields: dict[str, Any] = {}
        self.model: str | None = None
        self.error_type: str | None = None
        """Set when the provider sent an error event inside the stream."""
        self.final = False
        """Whether the provider's final usage arrived (``message_delta``; the OpenAI usage chunk)."""
        self._kept: list[bytes] | None = []
        """Relayed chunks not yet counted for an estimate; None once the final usage arrived."""
        self._kept_bytes = 0
        self._counted = 0
        """Output bytes counted from chunks no longer kept."""

    def feed(self, chunk: bytes) -> None:
        if self._cr or b"\r" in chunk:
            chunk, self._cr = normalize_line_endings(chunk, self._cr)
        kept = self._kept
        if kept is not None:
            kept.append(chunk)
            self._kept_bytes += len(chunk)
            if self._kept_bytes > KEEP_BYTES:
                self._count_kept()
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
        """The usage the provider reported so far."""
        if self.openai:
            return openai_usage(self.fields.get("usage"))
        return anthropic_usage(self.fields)

    def settle(self, request_bytes: int, max_tokens: int | None) -> tuple[Usage, bool]:
        """The usage to charge, and whether it is an estimate (the final usage never came; see above)."""
        reported = self.usage
        if self.final:
            return reported, False
        relayed = self._counted
        if self._kept:
            relayed += output_bytes(b"".join(self._kept), self.openai)
        output = -(-relayed // ESTIMATE_BYTES_PER_TOKEN)
        if max_tokens is not None and max_tokens > 0:
            output = min(output, max_tokens)
        output = max(output, reported.output_tokens)
        input_reported = "usage" in self.fields if self.openai else "input_tokens" in self.fields
        input_tokens = (
            reported.input_tokens if input_reported else request_bytes // ESTIMATE_BYTES_PER_TOKEN + 1
        )
        return replace(reported, input_tokens=input_tokens, output_tokens=output), True

    def _count_kept(self) -> None:
        """Count the complete events kept so far and keep only the incomplete rest (bounded memory)."""
        assert self._kept is not None
        data = b"".join(self._kept)
        end = data.rfind(b"\n\n")
        if end == -1:
            self._kept = [data]
            return
        self._counted += output_bytes(data[:end], self.openai)
        rest = data[end + 2 :]
        self._kept = [rest] if rest else []
        self._kept_bytes = len(rest)

    def _final(self) -> None:
        self.final = True
        self._kept = None

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
                    # The include_usage chunk has no choices; a provider that reports usage on every
                    # chunk (cumulative) has reported its final usage with the finish_reason.
                    if not self.final and _last_openai_chunk(payload.get("choices")):
                        self._final()
                if isinstance(payload.get("model"), str):
                    self.model = payload["model"]
            return
        name = _event_name(data, start, end)
        if name == b"message_start":
            payload = _data_json(data[start:end])
            message = payload.get("message") if payload else None
            if isinstance(message, dict):
                if isinstance(message.get("model"), str):
                    self.model = message["model"]
                self._merge(message.get("usage"))
        elif name == b"message_delta":
            payload = _data_json(data[start:end])
            if payload is not None:
                usage = payload.get("usage")
                self._merge(usage)
                if (
                    not self.final
                    and isinstance(usage, dict)
                    and _int(usage.get("output_tokens")) is not None
                ):
                    self._final()
        elif name == b"error":
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


def _event_name(data: bytes, start: int, end: int) -> bytes:
    """The ``event:`` field of the event in ``data[start:end]`` (usually its first line)."""
    if data.startswith(b"event: ", start):
        stop = data.find(b"\n", start, end)
        return data[start + 7 : stop if stop != -1 else end]
    name = b""
    for line in data[start:end].split(b"\n"):  # another field first (id:, a comment), or no space
        if line.startswith(b"event:"):
            name = line[7:] if line.startswith(b"event: ") else line[6:]
    return name


def _last_openai_chunk(choices: Any) -> bool:
    if not isinstance(choices, list) or not choices:
        return True
    return any(isinstance(choice, dict) and choice.get("finish_reason") for choice in choices)


_ANTHROPIC_TEXT = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
_OPENAI_TEXT = ("content", "refusal", "reasoning_content", "reasoning")


def output_bytes(data: bytes, openai: bool) -> int:
    """UTF-8 bytes of model output (text, thinking, tool input) in the complete SSE events of ``data``."""
    total = 0
    for event in data.split(b"\n\n"):
        if openai:
            if b'"delta"' not in event:
                continue
            payload = _event_json(event)
            choices = payload.get("choices") if payload else None
            for choice in choices if isinstance(choices, list) else ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict):
                    total += _openai_delta_bytes(delta)
        elif b'"content_block_delta"' in event:
            payload = _event_json(event)
            delta = payload.get("delta") if payload else None
            if isinstance(delta, dict):
                field = _ANTHROPIC_TEXT.get(str(delta.get("type")))
                value = delta.get(field) if field else None
                if isinstance(value, str):
                    total += len(value) if value.isascii() else len(value.encode())
    return total


def _event_json(event: bytes) -> dict[str, Any] | None:
    """`_data_json`, faster for the usual event: one ``data:`` line, after the ``event:`` line."""
    at = event.find(b"data:")
    if at == -1:
        return None
    try:
        payload = orjson.loads(event[at + 5 :])
    except orjson.JSONDecodeError:
        return _data_json(event)  # data split over several lines, or not JSON
    return payload if isinstance(payload, dict) else None


def _openai_delta_bytes(delta: dict[str, Any]) -> int:
    total = 0
    for name in _OPENAI_TEXT:
        value = delta.get(name)
        if isinstance(value, str):
            total += len(value) if value.isascii() else len(value.encode())
    calls = delta.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str):
            total += len(arguments) if arguments.isascii() else len(arguments.encode())
    return total


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


_ERROR_OPENINGS = (b"event: error", b"event:error", b'data: {"error"', b'data:{"error"')


def first_event_is_error(chunk: bytes) -> bool:
    """Whether a stream opens with an error event (the provider failed before any content)."""
    return chunk.lstrip().startswith(_ERROR_OPENINGS)
