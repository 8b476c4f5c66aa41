"""A mock model API: Anthropic Messages and OpenAI chat completions, for tests, benchmarks and offline demos.

It is not a model. It answers every request with deterministic text and
deterministic usage, so a test can predict tokens and cost exactly and a
benchmark measures the gateway rather than a model:

- ``POST /v1/messages`` (streaming or not), ``POST /v1/messages/count_tokens``,
  ``POST /v1/chat/completions`` (streaming or not; the final usage chunk when
  ``stream_options.include_usage`` is set), ``GET /v1/models``, ``GET``/``HEAD /``.
- Usage: ``input_tokens`` = request body bytes // 4; output = one token per reply
  word. With ``--cache-read-tokens``/``--cache-write-tokens``, requests that
  contain ``cache_control`` also report those cache tokens.
- Tool use: when the last user text names one of the request's ``tools`` (and
  the conversation is not already answering a tool result), the reply is a
  ``tool_use`` (``tool_calls`` in OpenAI shape) for it; arguments are the first
  JSON object in that text after the name, else ``{}``. After a tool result the
  reply quotes the result.
- ``--latency-ms`` before the first byte, ``--chunk-delay-ms`` between stream
  events, ``--fail-status`` (with ``--fail-count``) to play a failing provider,
  ``--cut-after-events`` to break every stream's connection after that many
  events (a provider that dies mid-stream), ``--api-key`` to require a provider key.

``python -m examples.servers.mock_model_api --port 8100`` serves it on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from collections import deque
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

JsonObject = dict[str, Any]
ASGIMessage = dict[str, Any]

WORDS = ("Hello", "from", "the", "mock", "model", "API.", "This", "reply", "is", "deterministic.")
DEFAULT_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-8", "gpt-4o-mini")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


@dataclass
class MockOptions:
    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    reply_words: int = 10
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    api_key: str | None = None
    fail_status: int | None = None
    fail_count: int | None = None
    """Fail only the first N requests (None: every request while ``fail_status`` is set)."""
    cut_after_events: int | None = None
    """Break each stream's connection after this many events, without ending the stream properly."""


class StreamCut(Exception):
    """Raised inside the ASGI app to make the server drop a stream's connection mid-response."""


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class MockModelApi:
    """The ASGI app. Tests read ``received`` and may set ``hold`` to pause responses."""

    options: MockOptions = field(default_factory=MockOptions)
    received: deque[Received] = field(default_factory=lambda: deque(maxlen=1000))
    hold: asyncio.Event | None = None
    """While set to an unset Event, responses pause (streams after ``hold_after_events`` events)."""
    hold_after_events: int = 3
    failures: int = 0

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await _read_body(receive)
        self.received.append(Received(method, path, scope.get("query_string", b"").decode(), headers, body))
        openai = path.endswith("/chat/completions")
        if path in ("/", "") and method in ("GET", "HEAD"):
            await _send(send, 200, b"ok", b"text/plain")
            return
        if not self._authorised(headers, openai):
            await _error(send, 401, "invalid API key for the mock model API", openai)
            return
        if self.options.latency_ms:
            await asyncio.sleep(self.options.latency_ms / 1000)
        if self.options.fail_status is not None and (
            self.options.fail_count is None or self.failures < self.options.fail_count
        ):
            self.failures += 1
            await _error(send, self.options.fail_status, "the mock model API was told to fail", openai)
            return
        if method == "GET" and path.endswith("/models"):
            await _send_json(send, 200, _models())
            return
        if method != "POST":
            await _error(send, 404, f"no route for {method} {path}", openai)
            return
        try:
            request = orjson.loads(body)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            await _error(send, 400, "request body is not a JSON object", openai)
            return
        if path.endswith("/v1/messages/count_tokens"):
            await _send_json(send, 200, {"input_tokens": max(1, len(body) // 4)})
        elif path.endswith("/v1/messages"):
            await self._messages(send, request, body)
        elif openai:
            await self._chat(send, request, body)
        else:
            await _error(send, 404, f"no route for {method} {path}", openai)

    def _authorised(self, headers: dict[str, str], openai: bool) -> bool:
        expected = self.options.api_key
        if expected is None:
            return True
        if openai:
            return headers.get("authorization") == f"Bearer {expected}"
        return headers.get("x-api-key") == expected

    async def _pause(self, sent_events: int | None) -> None:
        hold = self.hold
        if hold is not None and (sent_events is None or sent_events == self.hold_after_events):
            await hold.wait()

    async def _delay(self) -> None:
        if self.options.chunk_delay_ms:
            await asyncio.sleep(self.options.chunk_delay_ms / 1000)

    # -- Anthropic ---------------------------------------------------------------------------

    def _usage(self, request: JsonObject, body: bytes, output_tokens: int) -> JsonObject:
        cached = b'"cache_control"' in body
        return {
            "input_tokens": max(1, len(body) // 4),
            "cache_creation_input_tokens": self.options.cache_write_tokens if cached else 0,
            "cache_read_input_tokens": self.options.cache_read_tokens if cached else 0,
            "output_tokens": output_tokens,
        }

    async def _messages(self, send: Any, request: JsonObject, body: bytes) -> None:
        if not isinstance(request.get("model"), str) or not isinstance(request.get("messages"), list):
            await _error(send, 400, "model (string) and messages (list) are required", False)
            return
        reply = plan_reply(request, self.options.reply_words, openai=False)
        message_id = "msg_mock_" + hashlib.sha256(body).hexdigest()[:24]
        usage = self._usage(request, body, reply.output_tokens)
        if request.get("stream") is not True:
            await self._pause(None)
            content: list[JsonObject] = []
            if reply.text:
                content.append({"type": "text", "text": reply.text})
            if reply.tool is not None:
                content.append(
                    {"type": "tool_use", "id": reply.tool_id, "name": reply.tool, "input": reply.arguments}
                )
            await _send_json(
                send,
                200,
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": request["model"],
                    "content": content,
                    "stop_reason": "tool_use" if reply.tool else "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                },
            )
            return
        events = anthropic_events(message_id, request["model"], reply, usage)
        await self._stream(send, events)

    async def _stream(self, send: Any, events: Sequence[bytes]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        for index, event in enumerate(events):
            if index:
                await self._delay()
            await self._pause(index)
            if index == self.options.cut_after_events:
                raise StreamCut(f"the mock model API was told to cut streams after {index} events")
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- OpenAI ------------------------------------------------------------------------------

    async def _chat(self, send: Any, request: JsonObject, body: bytes) -> None:
        if not isinstance(request.get("model"), str) or not isinstance(request.get("messages"), list):
            await _error(send, 400, "model (string) and messages (list) are required", True)
            return
        reply = plan_reply(request, self.options.reply_words, openai=True)
        completion_id = "chatcmpl-mock" + hashlib.sha256(body).hexdigest()[:20]
        cached = self.options.cache_read_tokens if b'"cache_control"' in body else 0
        prompt = max(1, len(body) // 4) + cached
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": reply.output_tokens,
            "total_tokens": prompt + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        tool_calls = None
        if reply.tool is not None:
            arguments = orjson.dumps(reply.arguments).decode()
            tool_calls = [
                {
                    "index": 0,
                    "id": reply.tool_id,
                    "type": "function",
                    "function": {"name": reply.tool, "arguments": arguments},
                }
            ]
        finish = "tool_calls" if tool_calls else "stop"
        created = 1_700_000_000
        if request.get("stream") is not True:
            await self._pause(None)
            message: JsonObject = {"role": "assistant", "content": reply.text or None}
            if tool_calls:
                message["tool_calls"] = [
                    {k: v for k, v in call.items() if k != "index"} for call in tool_calls
                ]
            await _send_json(
                send,
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": request["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                },
            )
            return

        def chunk(choices: list[JsonObject], extra: JsonObject | None = None) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": request["model"],
                "choices": choices,
                **(extra or {}),
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        for piece in _pieces(reply.text):
            events.append(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        if tool_calls:
            events.append(chunk([{"index": 0, "delta": {"tool_calls": tool_calls}, "finish_reason": None}]))
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": finish}]))
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            events.append(chunk([], {"usage": usage}))
        events.append(b"data: [DONE]\n\n")
        await self._stream(send, events)


# -- reply planning (shared by both shapes) -----------------------------------------------------


@dataclass
class Reply:
    text: str
    tool: str | None = None
    tool_id: str | None = None
    arguments: JsonObject = field(default_factory=dict)
    output_tokens: int = 0


def _text_of(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
    return texts


def _tool_result_text(message: JsonObject) -> str | None:
    if message.get("role") == "tool":
        return " ".join(_text_of(message.get("content")))
    content = message.get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                return " ".join(_text_of(inner)) if not isinstance(inner, str) else inner
    return None


def _tool_names(request: JsonObject, openai: bool) -> list[str]:
    names = []
    tools = request.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        name = (function.get("name") if isinstance(function, dict) else None) if openai else tool.get("name")
        if isinstance(name, str):
            names.append(name)
    return names


def _first_json_object(text: str) -> JsonObject:
    start = text.find("{")
    while start != -1:
        depth = 0
        for end in range(start, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = orjson.loads(text[start : end + 1])
                    except orjson.JSONDecodeError:
                        break
                    return value if isinstance(value, dict) else {}
        start = text.find("{", start + 1)
    return {}


def plan_reply(request: JsonObject, reply_words: int, *, openai: bool) -> Reply:
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    result = _tool_result_text(last)
    if result is not None:
        text = f"The tool returned: {result[:400]}"
        return Reply(text, output_tokens=len(text.split()))
    prompt = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            texts = [
                t for t in _text_of(message.get("content")) if not t.lstrip().startswith("<system-reminder>")
            ]
            prompt = texts[-1] if texts else ""
            break
    for name in sorted(_tool_names(request, openai), key=len, reverse=True):
        position = prompt.find(name)
        if position != -1:
            arguments = _first_json_object(prompt[position + len(name) :])
            tool_id = ("call_" if openai else "toolu_") + hashlib.sha256(prompt.encode()).hexdigest()[:20]
            text = f"Calling {name}."
            tokens = len(text.split()) + len(orjson.dumps(arguments)) // 4 + 5
            return Reply(text, name, tool_id, arguments, tokens)
    words = [WORDS[i % len(WORDS)] for i in range(max(1, reply_words))]
    return Reply(" ".join(words), output_tokens=len(words))


def _pieces(text: str) -> list[str]:
    """Stream a text word by word (each piece keeps its leading space)."""
    if not text:
        return []
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def _sse(event: str, data: JsonObject) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_events(message_id: str, model: str, reply: Reply, usage: JsonObject) -> list[bytes]:
    start_usage = dict(usage, output_tokens=1)
    events = [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    index = 0
    if reply.text:
        events.append(
            _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        for piece in _pieces(reply.text):
            events.append(
                _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            )
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    if reply.tool is not None:
        block: JsonObject = {"type": "tool_use", "id": reply.tool_id, "name": reply.tool, "input": {}}
        events.append(
            _sse(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        encoded = orjson.dumps(reply.arguments).decode()
        middle = len(encoded) // 2
        for part in (encoded[:middle], encoded[middle:]):
            events.append(
                _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": part},
                    },
                )
            )
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if reply.tool else "end_turn", "stop_sequence": None},
                "usage": usage,
            },
        )
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


# -- ASGI helpers ---------------------------------------------------------------------------------


def _models() -> JsonObject:
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in DEFAULT_MODELS
    ]
    return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(
    send: Any, status: int, body: bytes, content_type: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Any, status: int, payload: JsonObject) -> None:
    await _send(send, status, orjson.dumps(payload), b"application/json")


async def _error(send: Any, status: int, message: str, openai: bool) -> None:
    kind = _ERROR_TYPES.get(status, "api_error")
    if openai:
        payload: JsonObject = {"error": {"message": message, "type": kind, "code": None}}
    else:
        payload = {"type": "error", "error": {"type": kind, "message": message}}
    extra = [(b"retry-after", b"1")] if status == 429 else []
    await _send(send, status, orjson.dumps(payload), b"application/json", extra)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# -- command line -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.servers.mock_model_api",
        description="Mock Anthropic/OpenAI model API with deterministic replies and usage (not a model).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait before the first byte")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="wait between stream events")
    parser.add_argument("--reply-words", type=int, default=10, help="words (= output tokens) per text reply")
    parser.add_argument("--cache-read-tokens", type=int, default=0)
    parser.add_argument("--cache-write-tokens", type=int, default=0)
    parser.add_argument("--api-key", help="require this provider key (x-api-key or Authorization: Bearer)")
    parser.add_argument("--fail-status", type=int, help="answer every request with this HTTP status")
    parser.add_argument("--fail-count", type=int, help="with --fail-status: fail only the first N requests")
    parser.add_argument("--cut-after-events", type=int, help="break each stream's connection after N events")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = build_parser().parse_args(argv)
    app = MockModelApi(
        MockOptions(
            latency_ms=args.latency_ms,
            chunk_delay_ms=args.chunk_delay_ms,
            reply_words=args.reply_words,
            cache_read_tokens=args.cache_read_tokens,
            cache_write_tokens=args.cache_write_tokens,
            api_key=args.api_key,
            fail_status=args.fail_status,
            fail_count=args.fail_count,
            cut_after_events=args.cut_after_events,
        )
    )
    print(
        f"mock model API on http://{args.host}:{args.port} (started {time.strftime('%H:%M:%S')})", flush=True
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        http="httptools",
        lifespan="on",
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
