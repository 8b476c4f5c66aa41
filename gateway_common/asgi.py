"""ASGI helpers both front doors use on their hot paths: size-limited bodies and small JSON answers.

Bare ASGI on purpose: the /mcp endpoint and the model endpoints answer every
request without building Starlette request or response objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import Receive, Send

Headers = list[tuple[bytes, bytes]]
_JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client disconnected before we finished reading its request."""


async def read_body(
    receive: Receive, limit: int, content_length: str | None, too_large: Callable[[int], Exception]
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


async def send_json(send: Send, status: int, body: Any, headers: Headers | None = None) -> None:
    """One JSON response with its length, in two ASGI messages."""
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_empty(send: Send, status: int, headers: Headers | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": b""})
