"""One fuzzed request (a `Case`), how it is sent, and how it is stored in the crasher corpus.

A case is what a client puts on the wire: method, path, headers (in order, duplicates
allowed, any latin-1 text) and body bytes, plus how the body is framed. Header values
may hold placeholders resolved at send time, so a stored case needs no live secret or
session: ``{ALICE}``, ``{BOB}`` (the fuzz keys), ``{HOST}`` (the gateway's host:port) and
``{SESSION:alice}`` / ``{SESSION:bob}`` (a 2025 session that key opened just before).

In the corpus a body is a list of parts, each a string or ``{"repeat": s, "times": n}``
(or ``{"base64": ...}`` for bytes that are not UTF-8), so a 1 MB name or 1,100 levels of
nesting take one line.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .live import ALICE, BOB, LiveGateway
from .wire import Answer, WireClient, build_request

KEYS = {"alice": ALICE, "bob": BOB}
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
_PLACEHOLDER = re.compile(r"\{(ALICE|BOB|HOST|SESSION:alice|SESSION:bob)\}")


@dataclass
class Case:
    method: str = "POST"
    path: str = "/mcp"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_length: str | bool | None = True
    """True: the honest length; a string: that (lying) value; None: no Content-Length."""
    chunked: bool = False
    open_ended: bool = False
    """The answer may be a stream that never ends (a GET stream, subscriptions/listen)."""
    raw: bytes | None = None
    """The whole request as bytes, sent as it is (placeholders resolved): for broken HTTP framing.
    ``method`` and ``path`` then only say what it is meant to be."""

    @property
    def fresh_connection(self) -> bool:
        """Requests whose framing may leave bytes behind get a connection of their own."""
        return (
            isinstance(self.content_length, str)
            or self.content_length is None
            or self.chunked
            or self.raw is not None
        )

    def message(self) -> Any:
        """The body as the gateway reads it (orjson: the last of duplicate keys wins), or None."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis prints an example
        printer.text(repr(self))

    def __repr__(self) -> str:
        if self.raw is not None:
            shown = self.raw if len(self.raw) <= 600 else self.raw[:600] + b"...(%d bytes)" % len(self.raw)
            return f"Case(raw={shown!r})"
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"...(%d bytes)" % len(self.body)
        headers = [(k, v if len(v) <= 200 else v[:200] + f"...({len(v)} chars)") for k, v in self.headers]
        return (
            f"Case({self.method} {self.path}, headers={headers!r}, body={body!r}, "
            f"content_length={self.content_length!r}, chunked={self.chunked})"
        )


def open_session(client: WireClient, gw: LiveGateway, key: str) -> str:
    """A new 2025-11-25 session for ``key`` (alice or bob), opened with initialize."""
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "1"},
            },
        }
    )
    headers = [
        (b"Host", f"{gw.host}:{gw.port}".encode()),
        (b"Authorization", f"Bearer {KEYS[key]}".encode()),
        (b"Content-Type", b"application/json"),
        (b"Accept", b"application/json, text/event-stream"),
    ]
    answer = client.exchange("POST", build_request("POST", "/mcp", headers, body))
    session = answer.header("mcp-session-id")
    assert answer.status == 200 and session, (answer.status, answer.body[:300])
    return session


def resolve(value: str, client: WireClient, gw: LiveGateway) -> bytes:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "HOST":
            return f"{gw.host}:{gw.port}"
        if name.startswith("SESSION:"):
            return open_session(client, gw, name.split(":", 1)[1])
        return KEYS[name.lower()]

    return _PLACEHOLDER.sub(replace, value).encode("latin-1")


def send(case: Case, client: WireClient, gw: LiveGateway) -> Answer:
    if case.raw is not None:
        raw = resolve(case.raw.decode("latin-1"), client, gw)
        return client.exchange(case.method, raw, open_ended=case.open_ended, fresh=True, keep=False)
    headers = [(name.encode("latin-1"), resolve(value, client, gw)) for name, value in case.headers]
    raw = build_request(
        case.method,
        case.path,
        headers,
        case.body,
        content_length=case.content_length.encode("latin-1")
        if isinstance(case.content_length, str)
        else bool(case.content_length),
        chunked=case.chunked,
    )
    return client.exchange(
        case.method,
        raw,
        open_ended=case.open_ended,
        fresh=case.fresh_connection,
        keep=not case.fresh_connection,
    )


# -- corpus form ---------------------------------------------------------------------------------

_MIN_RUN = 16


def body_parts(body: bytes) -> list[Any]:
    """The body as corpus parts: runs of a unit of 1-8 characters repeated 16+ times are folded."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return [{"base64": base64.b64encode(body).decode()}]
    parts: list[Any] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        best_unit, best_times = "", 0
        for size in range(1, 9):
            unit = text[i : i + size]
            if len(unit) < size:
                break
            times = 1
            while text.startswith(unit, i + times * size):
                times += 1
            if times >= _MIN_RUN and times * size > best_times * len(best_unit):
                best_unit, best_times = unit, times
        if best_times:
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append({"repeat": best_unit, "times": best_times})
            i += best_times * len(best_unit)
        else:
            literal.append(text[i])
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


def join_parts(parts: list[Any]) -> bytes:
    out: list[bytes] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part.encode("utf-8"))
        elif "base64" in part:
            out.append(base64.b64decode(part["base64"]))
        else:
            out.append(part["repeat"].encode("utf-8") * int(part["times"]))
    return b"".join(out)


def to_corpus(case: Case) -> dict[str, Any]:
    if case.raw is not None:
        return {"request": {"method": case.method, "path": case.path, "raw": body_parts(case.raw)}}
    return {
        "request": {
            "method": case.method,
            "path": case.path,
            "headers": [list(h) for h in case.headers],
            "body": body_parts(case.body),
            "content_length": case.content_length,
            "chunked": case.chunked,
            "open_ended": case.open_ended,
        }
    }


def from_corpus(entry: dict[str, Any]) -> Case:
    request = entry["request"]
    if "raw" in request:
        raw = join_parts(request["raw"])
        return Case(request.get("method", "POST"), request.get("path", "/mcp"), raw=raw)
    return Case(
        method=request.get("method", "POST"),
        path=request.get("path", "/mcp"),
        headers=[(name, value) for name, value in request.get("headers", [])],
        body=join_parts(request.get("body", [])),
        content_length=request.get("content_length", True),
        chunked=request.get("chunked", False),
        open_ended=request.get("open_ended", False),
    )
