"""Strategies for whole requests: /mcp in both protocol eras, and the model API.

A request has many parts (Host, Origin, key, Accept, routing headers, session, framing,
the JSON-RPC fields, the parameters). Each example first picks the few parts it gets
wrong (`Faults`); every other part is drawn right (still varied: either key, any real
method, any real tool). A request wrong in one or two places gets past the checks before
them and reaches the code behind them; one wrong everywhere would only ever meet the
first check. Leaf values inside a right part still get the wrong type now and then
(`jsontext.mostly`), which is where type confusion hides.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from .cases import LEGACY, MODERN, Case
from .jsontext import (
    dumps,
    fields,
    huge_texts,
    integers,
    maybe,
    mostly,
    scalar,
    texts,
    values,
    well_formed,
    wrong_types,
)
from .live import TOOLS

Draw = st.DrawFn
Headers = list[tuple[str, str]]


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, chosen in proportion to its weight."""
    table = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


@dataclass(frozen=True)
class Faults:
    """The parts of one request drawn wrong."""

    wrong: frozenset[str]

    def pick(
        self, draw: Draw, part: str, right: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]
    ) -> Any:
        return draw(wrong if part in self.wrong else right)


def faults(parts: tuple[str, ...], focus: tuple[str, ...] | None = None) -> st.SearchStrategy[Faults]:
    """Up to three of ``parts`` wrong; with a ``focus``, exactly one of those (a focused test)."""
    counts = (1,) if focus else (0, 1, 2, 3)
    parts = focus or parts
    return st.sampled_from(counts).flatmap(
        lambda count: st.lists(st.sampled_from(parts), min_size=count, max_size=count, unique=True).map(
            lambda wrong: Faults(frozenset(wrong))
        )
    )


any_wrong = weighted((6, wrong_types), (1, st.none()), (2, values))
"""A wrong value for a field: another type, no field at all, or anything."""


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)
"""Header values a client can send: printable latin-1 (no CR/LF; framing has its own test)."""
header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz-0123456789!#$%&'*+.^_`|~", min_size=1, max_size=20
)


def one_header(name: str, *examples: str) -> st.SearchStrategy[Headers]:
    """A wrong value for header ``name``: absent, one of ``examples``, or any text."""
    return weighted(
        (1, st.just([])),
        (3, st.sampled_from([[(name, value)] for value in examples])),
        (1, header_text.map(lambda value: [(name, value)])),
    )


# -- headers every route reads ----------------------------------------------------------------------

HOST_RIGHT = st.sampled_from([[("Host", "{HOST}")], [("Host", "localhost")], [("Host", "[::1]:1")]])
HOST_WRONG = st.one_of(
    st.just([("Host", "{HOST}"), ("Host", "evil.example")]),
    one_header("Host", "evil.example", "127.0.0.1.nip.io", "localhost.evil.example", "[::1", ""),
)
ORIGIN_RIGHT = st.sampled_from(
    [[], [], [], [("Origin", "http://localhost:3000")], [("Origin", "https://app.example.com")]]
)
ORIGIN_WRONG = st.one_of(
    st.just([("Origin", "http://localhost"), ("Origin", "null")]),
    one_header("Origin", "null", "https://evil.example", "http://[::1", "file://", "http://localhost.evil"),
)
ACCEPT_RIGHT = st.sampled_from(
    [
        [("Accept", "application/json, text/event-stream")],
        [("Accept", "application/json")],
        [("Accept", "text/event-stream")],
        [("Accept", "*/*")],
        [],
    ]
)
ACCEPT_WRONG = one_header("Accept", "text/html", "", "application/xml", "text/*")
CONTENT_TYPE_RIGHT = st.sampled_from([[("Content-Type", "application/json")], []])
CONTENT_TYPE_WRONG = one_header(
    "Content-Type", "text/plain", "application/json; charset=latin-1", "multipart/form-data"
)
EXTRA_WRONG = weighted(
    (2, st.lists(st.tuples(header_names, header_text), min_size=1, max_size=3)),
    (
        1,
        st.tuples(st.sampled_from(["X-Pad", "Cookie"]), st.integers(1, 6000)).map(
            lambda t: [(t[0], "p" * t[1])]
        ),
    ),
)


def bearer(key: str) -> Headers:
    return [("Authorization", f"Bearer {{{key.upper()}}}")]


AUTH_WRONG = st.one_of(
    st.sampled_from(
        [
            [],
            [("Authorization", "Bearer")],
            [("Authorization", "Bearer ")],
            [("Authorization", "bearer {ALICE}")],
            [("Authorization", "Basic {ALICE}")],
            [("Authorization", "Bearer {ALICE}x")],
            [("Authorization", "Bearer  {ALICE}")],
            [("Authorization", "Bearer mgw_not_a_key")],
            [("Authorization", "Bearer {BOB}"), ("Authorization", "Bearer {ALICE}")],
        ]
    ),
    header_text.map(lambda value: [("Authorization", value)]),
)


@st.composite
def framing(draw: Draw, body_size: int, wrong: bool) -> dict[str, Any]:
    """How the body is framed: honestly (Content-Length or chunked), or with a Content-Length that lies."""
    if not wrong:
        honest: list[dict[str, Any]] = [{}, {}, {}, {"chunked": True}]
        return draw(st.sampled_from(honest))
    if body_size > 1 and draw(st.booleans()):
        return {"content_length": str(draw(st.integers(0, body_size - 1)))}  # shorter than the body
    return {"content_length": draw(st.sampled_from(["99999999999", "4000000", "2000001"]))}  # over the limit


COMMON_PARTS = ("host", "origin", "auth", "content-type", "extra-headers", "framing", "http-method")


def common_headers(draw: Draw, f: Faults, key: str, accept: bool = True) -> Headers:
    headers: Headers = [*f.pick(draw, "host", HOST_RIGHT, HOST_WRONG)]  # a copy: strategies share their lists
    headers += f.pick(draw, "origin", ORIGIN_RIGHT, ORIGIN_WRONG)
    headers += f.pick(draw, "auth", st.just(bearer(key)), AUTH_WRONG)
    headers += f.pick(draw, "content-type", CONTENT_TYPE_RIGHT, CONTENT_TYPE_WRONG)
    if accept:
        headers += f.pick(draw, "accept", ACCEPT_RIGHT, ACCEPT_WRONG)
    return headers


# -- JSON-RPC -----------------------------------------------------------------------------------------

ids = weighted(
    (8, scalar(st.integers(0, 2**31))),
    (2, scalar(texts)),
    (1, st.sampled_from([b"-1", b'""', b"9223372036854775807"])),
    (1, scalar(huge_texts)),
)
IDS_WRONG = weighted(
    (3, wrong_types), (1, st.sampled_from([b"18446744073709551616", b"1e400", b"NaN"])), (1, values)
)
MODERN_METHODS = ("tools/list", "tools/call", "ping", "server/discover", "subscriptions/listen")
LEGACY_METHODS = (
    "tools/list",
    "tools/call",
    "ping",
    "logging/setLevel",
    "initialize",
    "notifications/cancelled",
)
NOTIFICATIONS = ("notifications/initialized", "notifications/cancelled", "notifications/progress")
OTHER_METHODS = (
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "prompts/get",
    "completion/complete",
    "tools/list ",
    "TOOLS/LIST",
    "rpc.discover",
    "initialize",
    "server/discover",
    "logging/setLevel",
)
TOOL_NAMES_WRONG = weighted(
    (
        3,
        st.sampled_from(["alpha__crash", "alpha__hang", "alpha__big", "beta__echo", "alpha__", "__echo", ""]),
    ),
    (1, texts),
    (1, huge_texts),
)
JSONRPC_PARTS = ("jsonrpc", "id", "method", "method-type", "params", "tool-name", "arguments")
"""The parts of a JSON-RPC message that may be wrong."""


def tool_arguments(name: str) -> st.SearchStrategy[bytes | None]:
    right = {
        "alpha__echo": fields(("text", mostly(weighted((6, scalar(texts)), (1, scalar(huge_texts)))))),
        "alpha__add": fields(("a", mostly(scalar(integers))), ("b", mostly(scalar(integers), 10))),
        "alpha__fail": fields(("reason", maybe(mostly(scalar(texts))))),
    }.get(name, well_formed)
    return maybe(right, absent_one_in=8)


def envelope(f: Faults, draw: Draw) -> bytes | None:
    """``params._meta`` of a 2026 request: the envelope right, or (a fault) missing, partial or wrong."""
    pv = "io.modelcontextprotocol/protocolVersion"
    caps = "io.modelcontextprotocol/clientCapabilities"
    info = "io.modelcontextprotocol/clientInfo"
    client_info = weighted(
        (6, st.just(b'{"name":"fuzz","version":"1"}')),
        (1, fields(("name", scalar(huge_texts)), ("version", mostly(scalar(texts))))),
        (1, values),
    )
    if "envelope" not in f.wrong:
        return draw(
            fields(
                (pv, st.just(dumps(MODERN))),
                (caps, st.just(b"{}")),
                (info, maybe(client_info)),
                ("progressToken", maybe(mostly(scalar(st.one_of(integers, texts))), absent_one_in=2)),
            )
        )
    return draw(
        st.one_of(
            st.none(),
            values,
            fields(
                (
                    pv,
                    maybe(
                        st.one_of(scalar(st.sampled_from([LEGACY, "2099-01-01", "", MODERN + " "])), values)
                    ),
                ),
                (caps, maybe(mostly(st.just(b"{}"), 2))),
                (info, maybe(client_info)),
            ),
        )
    )


@st.composite
def jsonrpc_body(
    draw: Draw, f: Faults, era: str, methods: tuple[str, ...] | None = None
) -> tuple[bytes, str, str | None]:
    """A JSON-RPC message; returns it, its method and the tool name it calls (for Mcp-Name)."""
    methods = methods or (MODERN_METHODS if era == "modern" else LEGACY_METHODS)
    method = f.pick(
        draw,
        "method",
        weighted((8, st.sampled_from(methods)), (1, st.sampled_from(NOTIFICATIONS))),
        st.one_of(st.sampled_from(OTHER_METHODS), texts),
    )
    name: str | None = None
    meta = (
        envelope(f, draw) if era == "modern" else draw(maybe(fields(("progressToken", scalar(integers))), 3))
    )
    if "params" in f.wrong:
        params = draw(any_wrong)
    elif method == "tools/call":
        name = f.pick(draw, "tool-name", st.sampled_from(TOOLS), TOOL_NAMES_WRONG)
        arguments = f.pick(draw, "arguments", tool_arguments(name), any_wrong)
        params = draw(
            fields(
                ("name", st.just(dumps(name))), ("arguments", st.just(arguments)), ("_meta", st.just(meta))
            )
        )
    elif method == "initialize":
        params = draw(
            fields(
                (
                    "protocolVersion",
                    mostly(scalar(st.sampled_from([LEGACY, "2025-06-18", MODERN, "1999", ""]))),
                ),
                ("capabilities", mostly(st.just(b"{}"))),
                (
                    "clientInfo",
                    weighted(
                        (6, st.just(b'{"name":"fuzz","version":"1"}')),
                        (1, fields(("name", scalar(huge_texts)), ("version", scalar(huge_texts)))),
                        (1, values),
                    ),
                ),
            )
        )
    elif method == "notifications/cancelled":
        params = draw(
            fields(
                ("requestId", weighted((1, ids), (1, wrong_types))), ("reason", maybe(mostly(scalar(texts))))
            )
        )
    elif method == "logging/setLevel":
        params = draw(fields(("level", mostly(scalar(st.sampled_from(["info", "debug", "INFO", ""])), 3))))
    else:
        params = draw(maybe(fields(("_meta", st.just(meta)), ("cursor", maybe(values))), absent_one_in=6))
    version = f.pick(
        draw,
        "jsonrpc",
        st.just(b'"2.0"'),
        st.one_of(wrong_types, st.sampled_from([b'"1.0"', b"2.0", b'"2.0 "'])),
    )
    request_id = None if method.startswith("notifications/") else f.pick(draw, "id", ids, IDS_WRONG)
    method_field = f.pick(draw, "method-type", st.just(dumps(method)), any_wrong)
    body = draw(
        fields(
            ("jsonrpc", st.just(version)),
            ("id", st.just(request_id)),
            ("method", st.just(method_field)),
            ("params", st.just(params)),
        )
    )
    return body, method, name


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable() and len(value) < 4000


MODERN_PARTS = (
    *COMMON_PARTS,
    *JSONRPC_PARTS,
    "accept",
    "envelope",
    "version-header",
    "method-header",
    "name-header",
)


@st.composite
def modern_mcp(
    draw: Draw, focus: tuple[str, ...] | None = None, methods: tuple[str, ...] | None = None
) -> Case:
    """A 2026-07-28 request: stateless, routing headers, the ``_meta`` envelope. ``focus``: exactly
    one of these parts is wrong (default: up to three of any); ``methods``: the right methods."""
    f = draw(faults(MODERN_PARTS, focus))
    body, method, name = draw(jsonrpc_body(f, "modern", methods))
    headers = common_headers(draw, f, draw(st.sampled_from(["alice", "bob"])))
    headers += f.pick(
        draw,
        "version-header",
        st.just([("MCP-Protocol-Version", MODERN)]),
        st.one_of(
            st.just([("MCP-Protocol-Version", MODERN), ("MCP-Protocol-Version", MODERN)]),
            one_header("MCP-Protocol-Version", LEGACY, "2026-07-29", MODERN + ",", "null"),
        ),
    )
    headers += f.pick(
        draw,
        "method-header",
        st.just([("Mcp-Method", method)] if _header_safe(method) else []),
        st.one_of(
            st.just([("Mcp-Method", method), ("Mcp-Method", method)] if _header_safe(method) else []),
            one_header(
                "Mcp-Method", "tools/list", "tools/call", method.upper() if _header_safe(method) else ""
            ),
        ),
    )
    if name is not None:
        sentinel = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
        exact = name if _header_safe(name) else sentinel
        headers += f.pick(
            draw,
            "name-header",
            st.sampled_from(
                [[("Mcp-Name", value)] for value in (exact, sentinel) if len(value) < 8000] or [[]]
            ),
            st.one_of(
                st.just([("Mcp-Name", "alpha__add"), ("Mcp-Name", exact[:100])]),
                one_header("Mcp-Name", "alpha__add", "=?base64?!!?=", "=?base64?YWxwaGFfX2VjaG8?="),
            ),
        )
    headers += f.pick(draw, "extra-headers", st.just([]), EXTRA_WRONG)
    http_method = f.pick(
        draw, "http-method", st.just("POST"), st.sampled_from(["GET", "DELETE", "PUT", "HEAD", "OPTIONS"])
    )
    return Case(
        http_method,
        "/mcp",
        headers,
        body,
        open_ended=http_method == "GET" or method == "subscriptions/listen",
        **draw(framing(len(body), "framing" in f.wrong)),
    )


LEGACY_PARTS = (*COMMON_PARTS, *JSONRPC_PARTS, "accept", "session", "version-header")


@st.composite
def legacy_mcp(draw: Draw, focus: tuple[str, ...] | None = None) -> Case:
    """A 2025-11-25 request: with or without initialize and a session id (own, another key's, unknown).
    ``focus``: exactly one of these parts is wrong (default: up to three of any)."""
    f = draw(faults(LEGACY_PARTS, focus))
    body, _, _ = draw(jsonrpc_body(f, "legacy"))
    key = draw(st.sampled_from(["alice", "bob"]))
    other = "alice" if key == "bob" else "bob"
    headers = common_headers(draw, f, key)
    headers += f.pick(
        draw,
        "session",
        st.just([("Mcp-Session-Id", f"{{SESSION:{key}}}")]),
        st.one_of(
            st.just([("Mcp-Session-Id", f"{{SESSION:{other}}}")]),  # another key's session
            st.just([("Mcp-Session-Id", f"{{SESSION:{key}}}"), ("Mcp-Session-Id", "0" * 32)]),
            one_header("Mcp-Session-Id", "0" * 32, "", "../" * 10),
        ),
    )
    headers += f.pick(
        draw,
        "version-header",
        st.sampled_from([[("MCP-Protocol-Version", LEGACY)], [("MCP-Protocol-Version", "2025-06-18")], []]),
        one_header("MCP-Protocol-Version", MODERN, "2024-01-01", "null"),
    )
    headers += f.pick(draw, "extra-headers", st.just([]), EXTRA_WRONG)
    http_method = f.pick(
        draw,
        "http-method",
        st.sampled_from(["POST"] * 6 + ["GET", "DELETE"]),
        st.sampled_from(["PUT", "HEAD", "PATCH"]),
    )
    return Case(
        http_method,
        "/mcp",
        headers,
        body,
        open_ended=http_method == "GET",
        **draw(framing(len(body), "framing" in f.wrong)),
    )


@st.composite
def raw_mcp(draw: Draw) -> Case:
    """/mcp with a body that is anything at all: bytes, JSON of any shape, nothing."""
    body = draw(
        weighted(
            (2, st.binary(max_size=200)),
            (2, values),
            (
                1,
                st.sampled_from(
                    [b"", b"[]", b"[{}]", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', b"\xef\xbb\xbf{}"]
                ),
            ),
        )
    )
    era = draw(
        st.sampled_from([[("MCP-Protocol-Version", MODERN)], [("Mcp-Session-Id", "{SESSION:alice}")], []])
    )
    f = draw(faults(("framing", "content-type", "accept")))
    headers = [
        ("Host", "{HOST}"),
        *bearer("alice"),
        *common_headers(draw, Faults(f.wrong), "alice")[2:],
        *era,
    ]
    return Case("POST", "/mcp", headers, body, **draw(framing(len(body), "framing" in f.wrong)))


# -- the model API ------------------------------------------------------------------------------------

MODELS = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-8", "gpt-4o-mini")
MODELS_WRONG = weighted(
    (
        3,
        scalar(
            st.sampled_from(
                ["claude-unknown-9", "fast", "", " ", "gpt-unknown", "claude-*", "claude-haiku-4-5\x00"]
            )
        ),
    ),
    (1, scalar(huge_texts.map(lambda t: "claude-" + t))),
    (2, any_wrong),
)
MESSAGES_RIGHT = weighted(
    (4, st.just(b'[{"role":"user","content":"hi"}]')),
    (
        2,
        st.lists(
            fields(
                ("role", mostly(scalar(st.sampled_from(["user", "assistant", "system", "tool", "x"])))),
                (
                    "content",
                    mostly(
                        st.one_of(
                            scalar(texts),
                            st.just(b'[{"type":"text","text":"alpha__echo {\\"text\\": \\"x\\"}"}]'),
                            st.just(
                                b'[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}]}]'
                            ),
                        )
                    ),
                ),
            ),
            min_size=1,
            max_size=3,
        ).map(lambda items: b"[" + b",".join(items) + b"]"),
    ),
)
TOOLS_FIELD = st.lists(
    fields(
        ("name", mostly(scalar(st.sampled_from(["alpha__echo", "x", ""])))),
        ("function", maybe(mostly(st.just(b'{"name":"alpha__echo"}')), 2)),
        ("input_schema", maybe(mostly(st.just(b'{"type":"object"}')))),
    ),
    max_size=2,
).map(lambda items: b"[" + b",".join(items) + b"]")
MODEL_BODY_PARTS = ("model", "messages", "max_tokens", "stream", "tools", "body")
MODEL_PARTS = (*COMMON_PARTS, *MODEL_BODY_PARTS, "key-header", "query")


@st.composite
def model_request(draw: Draw, path: str, focus: tuple[str, ...] | None = None) -> Case:
    """/v1/messages, /v1/chat/completions or /v1/messages/count_tokens: bodies of every shape.
    ``focus``: exactly one of these parts is wrong (default: up to three of any)."""
    f = draw(faults(MODEL_PARTS, focus))
    openai = path.endswith("chat/completions")

    def field(part: str, right: st.SearchStrategy[bytes | None]) -> st.SearchStrategy[bytes | None]:
        return st.just(f.pick(draw, part, right, any_wrong))

    body = f.pick(
        draw,
        "body",
        fields(
            (
                "model",
                st.just(f.pick(draw, "model", scalar(st.sampled_from(MODELS)), MODELS_WRONG)),
            ),
            ("messages", field("messages", MESSAGES_RIGHT)),
            ("max_tokens", field("max_tokens", maybe(scalar(st.integers(1, 4096)), 3))),
            ("stream", field("stream", maybe(st.sampled_from([b"true", b"false"]), 2))),
            ("tools", field("tools", maybe(TOOLS_FIELD, 2))),
            ("stream_options" if openai else "system", maybe(mostly(well_formed, 3), 2)),
            ("metadata", maybe(mostly(well_formed, 3), 2)),
        ),
        st.one_of(values, st.binary(max_size=100)),
    )
    key = draw(st.sampled_from(["alice", "bob"]))
    headers: Headers = [*f.pick(draw, "host", HOST_RIGHT, HOST_WRONG)]  # a copy: strategies share their lists
    headers += f.pick(draw, "origin", ORIGIN_RIGHT, ORIGIN_WRONG)
    headers += f.pick(
        draw,
        "key-header",
        st.sampled_from([[("x-api-key", f"{{{key.upper()}}}")], bearer(key)]),
        st.one_of(
            st.sampled_from(
                [
                    [],
                    [("x-api-key", "")],
                    [("x-api-key", "{ALICE}x")],
                    [("x-api-key", "{BOB}"), ("x-api-key", "{ALICE}")],
                ]
            ),
            header_text.map(lambda value: [("x-api-key", value)]),
        ),
    )
    headers += f.pick(draw, "content-type", CONTENT_TYPE_RIGHT, CONTENT_TYPE_WRONG)
    headers += [] if openai else [("anthropic-version", "2023-06-01")]
    headers += f.pick(
        draw,
        "extra-headers",
        st.just([]),
        st.one_of(
            EXTRA_WRONG,
            st.lists(
                st.tuples(
                    st.sampled_from(
                        ["anthropic-version", "anthropic-beta", "x-claude-code-session-id", "user-agent"]
                    ),
                    weighted((3, header_text), (1, st.integers(1, 5000).map(lambda n: "u" * n))),
                ),
                min_size=1,
                max_size=3,
            ),
        ),
    )
    query = f.pick(
        draw,
        "query",
        st.sampled_from(["", "?beta=true"]),
        st.sampled_from(["?x=%00&y=%ff", "?" + "q" * 3000, "?beta"]),
    )
    http_method = f.pick(
        draw, "http-method", st.just("POST"), st.sampled_from(["GET", "PUT", "HEAD", "DELETE"])
    )
    return Case(http_method, path + query, headers, body, **draw(framing(len(body), "framing" in f.wrong)))


# -- everything else ----------------------------------------------------------------------------------

OTHER_PATHS = (
    "/",
    "/healthz",
    "/readyz",
    "/v1/models",
    "/v1/messages/",
    "/v1/messages/count_tokens/",
    "/mcp/",
    "/.well-known/oauth-protected-resource/mcp",
    "/.well-known/oauth-authorization-server",
    "/register",
    "/token",
    "/nope",
    "/%2e%2e/mcp",
)


@st.composite
def other_routes(draw: Draw) -> Case:
    """The small routes (health, models list, OAuth discovery, root, unknown paths) with any key."""
    path = draw(st.sampled_from(OTHER_PATHS))
    key = draw(
        weighted(
            (
                3,
                st.sampled_from(
                    [[], bearer("alice"), [("x-api-key", "{BOB}")], [("anthropic-version", "2023-06-01")]]
                ),
            ),
            (1, AUTH_WRONG),
        )
    )
    headers = [
        *draw(weighted((6, HOST_RIGHT), (1, HOST_WRONG))),
        *draw(weighted((6, ORIGIN_RIGHT), (1, ORIGIN_WRONG))),
        *key,
    ]
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "DELETE", "OPTIONS"]))
    body = draw(st.sampled_from([b"", b"", b"{}", b"\x00"])) if method != "GET" else b""
    return Case(method, path, headers, body)
