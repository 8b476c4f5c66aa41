"""HTTP framing for /mcp: the headers we read, size-limited bodies, JSON and SSE answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from ..errors import HttpProblem
from .streams import SSE_HEADERS, sse_event

JsonObject = dict[str, Any]
_JSON_HEADERS = [(b"content-type", b"application/json")]
_WANTED = frozenset(
    {
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "accept",
        "content-length",
        "host",
        "origin",
    }
)


class ClientGone(Exception):
    """The client disconnected before we finished reading its request."""


_ROUTING = frozenset({"mcp-protocol-version", "mcp-method", "mcp-name"})
DUPLICATE_ROUTING_HEADER = ":duplicate-routing-header"
"""Pseudo-header `read_headers` sets when a routing header came twice (first and last readers disagree)."""


def read_headers(scope: Scope) -> dict[str, str]:
    """The headers the endpoint reads, decoded once, in one pass over the raw list."""
    wanted: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name in _WANTED:
            if name not in wanted:
                wanted[name] = raw_value.decode("latin-1")
            elif name in _ROUTING:
                wanted[DUPLICATE_ROUTING_HEADER] = name
    return wanted


async def send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_empty(send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": b""})


async def send_problem(send: Send, problem: HttpProblem) -> None:
    headers = [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await send_json(send, problem.status, {"error": problem.error, "message": problem.message}, headers)


def _too_large(limit: int) -> Exception:
    return HttpProblem(
        413, "request_too_large", f"Request body is larger than the gateway's limit of {limit} bytes"
    )


async def read_body(
    receive: Receive,
    limit: int,
    content_length: str | None,
    too_large: Callable[[int], Exception] = _too_large,
) -> bytes:
    """The whole request body, refused (``too_large(limit)``) as soon as it is known to exceed ``limit``:
    from Content-Length before reading, else while reading. Raises `ClientGone` on a disconnect."""
    if content_length is not None and content_length.isascii() and content_length.isdigit():
        # Only plain ASCII digits are a size ("²".isdigit() is true). More than 18 significant digits is
        # over any limit, and is never converted (int() refuses more than 4,300 digits).
        digits = content_length if len(content_length) <= 18 else (content_length.lstrip("0") or "0")
        if len(digits) > 18 or int(digits) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Responder:
    """Writes one POST's answer: JSON by default, SSE once a notification has to go out first."""

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]], sse_allowed: bool) -> None:
        self._send = send
        self._headers = headers
        self.sse_allowed = sse_allowed
        self.streaming = False

    async def notify(self, message: JsonObject) -> None:
        if not self.streaming:
            self.streaming = True
            await self._send(
                {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self._headers}
            )
        await self._send({"type": "http.response.body", "body": sse_event(message), "more_body": True})

    async def finish(self, message: JsonObject, status: int = 200) -> None:
        if self.streaming:
            await self._send({"type": "http.response.body", "body": sse_event(message), "more_body": False})
        else:
            await send_json(self._send, status, message, self._headers)
