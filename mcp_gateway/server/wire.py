"""HTTP framing for /mcp: the headers we read, size-limited bodies, JSON and SSE answers."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from gateway_common.asgi import read_body as read_limited_body
from gateway_common.asgi import send_json
from mcp_gateway.errors import HttpProblem
from mcp_gateway.server.streams import SSE_HEADERS, sse_event

JsonObject = dict[str, Any]
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


async def send_problem(send: Send, problem: HttpProblem) -> None:
    headers = [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await send_json(send, problem.status, {"error": problem.error, "message": problem.message}, headers)


def _too_large(limit: int) -> Exception:
    return HttpProblem(
        413, "request_too_large", f"Request body is larger than the gateway's limit of {limit} bytes"
    )


async def read_body(receive: Receive, limit: int, content_length: str | None) -> bytes:
    """The request body within the gateway's limit; too large is HTTP 413 with a JSON body."""
    return await read_limited_body(receive, limit, content_length, _too_large)


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
