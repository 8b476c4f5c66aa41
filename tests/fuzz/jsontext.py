"""Strategies for JSON *text*: what a hostile or broken client can put in a body.

Built as bytes, not as Python values, because the interesting inputs cannot be made by
an encoder: nesting deeper than orjson writes (254) or reads (1,024), duplicate keys,
tokens JSON does not have (NaN, Infinity), numbers no double holds, lone surrogates.
Most values stay well-formed, so messages get past the parser and reach what is behind it.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from hypothesis import strategies as st

DEPTHS = (2, 10, 63, 64, 65, 100, 254, 255, 300, 1000, 1023, 1024, 1025, 1100, 1200)
"""Nesting depths around every limit: the gateway's (64), orjson's encoder (254) and decoder (1,024)."""
HUGE_SIZES = (4096, 65_536, 300_000, 1_000_000)
ODD_TOKENS = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"-0",
    b"1e-400",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"123456789012345678901234567890",
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b'"\\u0000"',
    b'"\\uZZZZ"',
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"nul",
    b"tru",
    b"'single'",
    b'"unterminated',
    b"\xff\xfe",
    b"",
)


def dumps(value: object) -> bytes:
    return orjson.dumps(value)


texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["", " ", "\x00", "\u2028", "é", "😀", "\ufeff", "../../etc/passwd", "%s%n", "{{x}}"]),
)
"""Short strings: unicode, control characters, the odd classic."""

huge_texts = st.tuples(st.sampled_from(HUGE_SIZES), st.sampled_from(["x", "é", "😀", "\x00", "{"])).map(
    lambda size_char: size_char[1] * (size_char[0] // len(size_char[1].encode()))
)
"""Long strings, cheaply: a size and a character (multi-byte characters keep the byte size)."""

integers = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63)]),
)
floats = st.floats(allow_nan=False, allow_infinity=False)


def scalar(value: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    return value.map(dumps)


scalars: st.SearchStrategy[bytes] = st.one_of(
    st.just(b"null"),
    st.sampled_from([b"true", b"false"]),
    scalar(integers),
    scalar(floats),
    scalar(texts),
)


def array(items: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def obj(pairs: Sequence[tuple[str, bytes]]) -> bytes:
    """An object from (key, JSON text) pairs, in order; a repeated key stays repeated."""
    return b"{" + b",".join(dumps(key) + b":" + value for key, value in pairs) + b"}"


def deep(depth: int, shape: str, leaf: bytes = b"{}") -> bytes:
    """``depth`` levels of containers (counting ``leaf`` as one when it is a container)."""
    levels = depth - 1 if leaf[:1] in (b"{", b"[") else depth
    opens = {"object": b'{"k":', "array": b"[", "mixed": b'{"k":['}[shape]
    closes = {"object": b"}", "array": b"]", "mixed": b"]}"}[shape]
    if shape == "mixed":
        return (
            opens * (levels // 2)
            + (b"[" if levels % 2 else b"")
            + leaf
            + (b"]" if levels % 2 else b"")
            + closes * (levels // 2)
        )
    return opens * levels + leaf + closes * levels


deep_values = st.builds(deep, st.sampled_from(DEPTHS), st.sampled_from(["object", "array", "mixed"]))
keys = st.one_of(st.sampled_from(["a", "k", "text", "_meta", "name", "", "__proto__"]), texts)


def containers(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.lists(inner, max_size=5).map(array),
        st.lists(st.tuples(keys, inner), max_size=5).map(obj),
    )


well_formed: st.SearchStrategy[bytes] = st.recursive(scalars, containers, max_leaves=12)
"""Ordinary JSON values of every type (shallow)."""

WRONG_TYPES = (
    b"null",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1.5",
    b'""',
    b'"x"',
    b"[]",
    b"[1]",
    b"{}",
    b'{"a":1}',
)
wrong_types: st.SearchStrategy[bytes] = st.sampled_from(WRONG_TYPES)
"""One value of each JSON type: what a field of the wrong type looks like."""


def mostly(right: st.SearchStrategy[bytes], wrong_one_in: int = 6) -> st.SearchStrategy[bytes]:
    """``right`` most of the time; else a value of another type, or anything (`values`)."""
    return st.integers(0, wrong_one_in - 1).flatmap(
        lambda n: wrong_types if n == 0 else values if n == 1 and wrong_one_in > 2 else right
    )


values: st.SearchStrategy[bytes] = st.integers(0, 19).flatmap(
    lambda n: (
        st.sampled_from(ODD_TOKENS)
        if n == 0
        else deep_values
        if n == 1
        else scalar(huge_texts)
        if n == 2
        else well_formed
    )
)
"""Any JSON value: mostly well-formed, sometimes deep, huge or not JSON at all."""


def maybe(strategy: st.SearchStrategy[bytes], absent_one_in: int = 5) -> st.SearchStrategy[bytes | None]:
    """The value, or (about one time in ``absent_one_in``) no such field."""
    return st.integers(0, absent_one_in - 1).flatmap(lambda n: st.none() if n == 0 else strategy)


def fields(*entries: tuple[str, st.SearchStrategy[bytes | None]]) -> st.SearchStrategy[bytes]:
    """An object with these fields (a None value leaves the field out), plus now and then an
    extra unknown field or the same key twice (raw text; the parser keeps the last)."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        pairs: list[tuple[str, bytes]] = []
        for key, strategy in entries:
            value = draw(strategy)
            if value is not None:
                pairs.append((key, value))
        extra = draw(st.integers(0, 9))
        if extra == 0:
            pairs.append((draw(keys), draw(values)))
        elif extra == 1 and pairs:
            key, _ = pairs[draw(st.integers(0, len(pairs) - 1))]
            pairs.insert(0, (key, draw(values)))  # a duplicate, first
        return obj(pairs)

    return build()
