"""Strategies for broken HTTP/1.1 framing: a valid request with one or two byte-level breaks.

The request line, the line endings, header syntax, Content-Length and Transfer-Encoding
values, chunk syntax, upgrades and pipelining. Every request stays *complete* however a
lenient parser reads it (a Content-Length of ``+5`` or `` 5`` still counts the real body),
so the server always has a whole request to answer, with an error or otherwise; none asks
it to wait for bytes that never come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

from .cases import MODERN, Case

Draw = st.DrawFn
ENVELOPE = (
    b'{"io.modelcontextprotocol/protocolVersion":"' + MODERN.encode() + b'",'
    b'"io.modelcontextprotocol/clientCapabilities":{}}'
)


@dataclass
class RawRequest:
    method: bytes
    target: bytes
    version: bytes = b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    eol: bytes = b"\r\n"
    framing: str = "length"
    """``length`` (an honest Content-Length), ``chunked``, or ``none`` (the headers say it all)."""
    chunks: list[bytes] | None = None
    """Raw chunked payload when a break rewrote it."""
    tail: bytes = b""
    """Bytes after the request: a pipelined second request."""

    def render(self) -> bytes:
        lines = [self.method + b" " + self.target + (b" " + self.version if self.version else b"")]
        lines += [name + b": " + value if name else value for name, value in self.headers]
        body = self.body
        if self.framing == "length":
            lines.append(b"Content-Length: " + str(len(body)).encode())
        elif self.framing == "chunked":
            lines.append(b"Transfer-Encoding: chunked")
            body = b"".join(self.chunks) if self.chunks is not None else _chunked(body)
        return self.eol.join(lines) + self.eol + self.eol + body + self.tail


def _chunked(body: bytes) -> bytes:
    return (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"


def _mcp(method: str) -> RawRequest:
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"' + method.encode() + b'","params":{"_meta":' + ENVELOPE + b"}}"
    )
    return RawRequest(
        b"POST",
        b"/mcp",
        headers=[
            (b"Host", b"{HOST}"),
            (b"Authorization", b"Bearer {ALICE}"),
            (b"Content-Type", b"application/json"),
            (b"Accept", b"application/json, text/event-stream"),
            (b"MCP-Protocol-Version", MODERN.encode()),
            (b"Mcp-Method", method.encode()),
        ],
        body=body,
    )


BASES: dict[str, Callable[[], RawRequest]] = {
    "/mcp tools/list": lambda: _mcp("tools/list"),
    "/mcp ping": lambda: _mcp("ping"),
    "/v1/messages/count_tokens": lambda: RawRequest(
        b"POST",
        b"/v1/messages/count_tokens",
        headers=[(b"Host", b"{HOST}"), (b"x-api-key", b"{ALICE}"), (b"anthropic-version", b"2023-06-01")],
        body=b'{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}',
    ),
    "/healthz": lambda: RawRequest(b"GET", b"/healthz", headers=[(b"Host", b"{HOST}")], framing="none"),
}

Break = Callable[[Draw, RawRequest], RawRequest]


def request_line(draw: Draw, r: RawRequest) -> RawRequest:
    part = draw(st.sampled_from(["method", "target", "version"]))
    if part == "method":
        return replace(
            r,
            method=draw(
                st.sampled_from([b"P@ST", b"post", b"PO ST", b"PRI", b"TRACE", b"CONNECT", b"\xffPOST"])
            ),
        )
    if part == "target":
        target = draw(
            st.sampled_from(
                [
                    b"*",
                    b"http://{HOST}" + r.target,
                    r.target + b"?" + b"q" * 20_000,
                    r.target + b"%00",
                    r.target + b"/../" + r.target.lstrip(b"/"),
                    b"/" + r.target,
                    r.target.upper(),
                    r.target + b"#frag",
                    r.target + b"\xff",
                    b"",
                ]
            )
        )
        return replace(r, target=target)
    version = draw(
        st.sampled_from([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/1", b"http/1.1", b"HTTP/1.1x", b""])
    )
    return replace(r, version=version)


def line_endings(draw: Draw, r: RawRequest) -> RawRequest:
    return replace(r, eol=b"\n")  # bare LF (a bare CR would leave the head unfinished: no request at all)


def header_syntax(draw: Draw, r: RawRequest) -> RawRequest:
    junk = draw(
        st.sampled_from(
            [
                (b"", b"NoColonHere"),
                (b"Bad Name", b"x"),
                (b"Name ", b"x"),
                (b"", b": empty name"),
                (b"", b" folded continuation"),
                (b"X-Nul", b"a\x00b"),
                (b"X-Del", b"\x7f"),
                (b"X-High", b"\xff\xfe"),
                (b"X-Big", b"h" * 100_000),
                (b"X-Tab", b"\ta\t"),
            ]
        )
    )
    at = draw(st.integers(0, len(r.headers)))
    many = draw(st.booleans()) and junk[0] == b"X-Tab"
    extra = [(b"X-%d" % i, b"v") for i in range(500)] if many else []
    return replace(r, headers=[*r.headers[:at], junk, *r.headers[at:], *extra])


def content_length(draw: Draw, r: RawRequest) -> RawRequest:
    size = str(len(r.body)).encode()
    value = draw(
        st.sampled_from(
            [
                [b"-1"],
                [b"+" + size],
                [b" " + size],
                [size + b" "],
                [size + b", " + size],
                [size, size],
                [size, b"0"],
                [b"0x%x" % len(r.body)],
                [b"\xb2"],
                [b"1e3"],
                [b"99999999999999999999999"],
                [b""],
            ]
        )
    )
    headers = [*r.headers, *((b"Content-Length", v) for v in value)]
    if draw(st.booleans()):
        headers.append((b"Transfer-Encoding", b"chunked"))  # both: request smuggling's favourite
        return replace(r, headers=headers, framing="none", body=_chunked(r.body))
    return replace(r, headers=headers, framing="none")


def chunked(draw: Draw, r: RawRequest) -> RawRequest:
    body = r.body
    size = f"{len(body):x}".encode()
    chunks = draw(
        st.sampled_from(
            [
                [b"zz\r\n", body, b"\r\n0\r\n\r\n"],
                [b"-1\r\n", body, b"\r\n0\r\n\r\n"],
                [b"ffffffffffffffffff\r\n", body, b"\r\n0\r\n\r\n"],
                [size + b";ext=1\r\n", body, b"\r\n0\r\n\r\n"],
                [size + b"\r\n", body, b"0\r\n\r\n"],  # no CRLF after the data
                [size + b"\r\n", body, b"\r\n0\r\nX-Trailer: 1\r\n\r\n"],
                [b"1\r\n", body[:1], b"\r\n", f"{len(body) - 1:x}\r\n".encode(), body[1:], b"\r\n0\r\n\r\n"],
                [size + b"\n", body, b"\n0\n\n"],
            ]
        )
    )
    encoding = draw(
        st.sampled_from([b"chunked", b"Chunked", b"gzip, chunked", b"chunked, gzip", b"identity"])
    )
    if encoding != b"chunked":
        return replace(
            r, framing="none", headers=[*r.headers, (b"Transfer-Encoding", encoding)], body=b"".join(chunks)
        )
    return replace(r, framing="chunked", chunks=chunks)


def connection_headers(draw: Draw, r: RawRequest) -> RawRequest:
    extra = draw(
        st.sampled_from(
            [
                [(b"Expect", b"100-continue")],
                [(b"Expect", b"200-ok")],
                [
                    (b"Upgrade", b"websocket"),
                    (b"Connection", b"Upgrade"),
                    (b"Sec-WebSocket-Version", b"13"),
                    (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                ],
                [(b"Upgrade", b"h2c"), (b"Connection", b"Upgrade, HTTP2-Settings"), (b"HTTP2-Settings", b"")],
                [(b"Connection", b"close")],
                [(b"Connection", b"keep-alive, Upgrade")],
                [(b"Proxy-Connection", b"keep-alive"), (b"X-Forwarded-For", b"1.2.3.4")],
            ]
        )
    )
    return replace(r, headers=[*r.headers, *extra])


def pipelining(draw: Draw, r: RawRequest) -> RawRequest:
    second = draw(st.sampled_from([b"", b"garbage\r\n\r\n", b"\x00\x01\x02", b"\r\n\r\n"]))
    return replace(r, tail=second or _mcp("ping").render())


BREAKS: tuple[Break, ...] = (
    request_line,
    line_endings,
    header_syntax,
    content_length,
    chunked,
    connection_headers,
    pipelining,
)


@st.composite
def broken_http(draw: Draw) -> Case:
    """A valid request with one or two framing breaks, sent as raw bytes on a connection of its own."""
    name = draw(st.sampled_from(sorted(BASES)))
    request = BASES[name]()
    for brk in draw(st.lists(st.sampled_from(BREAKS), min_size=1, max_size=2, unique=True)):
        request = brk(draw, request)
    path = name.split()[0]
    return Case(request.method.decode("latin-1"), path, raw=request.render())
