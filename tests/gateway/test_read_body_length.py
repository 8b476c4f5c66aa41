"""`read_body` trusts a Content-Length only to refuse early, and no value of it can break it.

uvicorn's parsers refuse a malformed Content-Length before the app sees it, but the endpoints
are plain ASGI apps and other servers are more lenient. A value that is not ASCII digits
("²" passes ``str.isdigit``) or has more digits than ``int`` converts (4,300) raised ValueError
(a 500); it now means nothing, and the body is read and limited as it arrives.
"""

from __future__ import annotations

from typing import Any

import pytest

from mcp_gateway.errors import HttpProblem
from mcp_gateway.server.wire import read_body


def receiving(*chunks: bytes) -> Any:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


@pytest.mark.anyio
@pytest.mark.parametrize("declared", ["²", "1²", "٣", "", "-1", "+3", " 3", "3.0"])
async def test_a_content_length_that_is_no_number_is_ignored(declared: str) -> None:
    assert await read_body(receiving(b"abc"), 10, declared) == b"abc"


@pytest.mark.anyio
@pytest.mark.parametrize("declared", ["11", "0" * 30 + "11", "9" * 5000, "18446744073709551616"])
async def test_a_declared_size_over_the_limit_is_refused_before_reading(declared: str) -> None:
    async def never() -> dict[str, Any]:
        raise AssertionError("the body was read")

    with pytest.raises(HttpProblem) as refused:
        await read_body(never, 10, declared)
    assert refused.value.status == 413


@pytest.mark.anyio
async def test_a_lying_small_content_length_does_not_let_a_large_body_through() -> None:
    with pytest.raises(HttpProblem):
        await read_body(receiving(b"x" * 6, b"x" * 6), 10, "3")


@pytest.mark.anyio
@pytest.mark.parametrize("declared", ["3", "0" * 30 + "3", "0" * 30, "10"])
async def test_a_declared_size_within_the_limit_reads_the_body(declared: str) -> None:
    assert await read_body(receiving(b"abc"), 10, declared) == b"abc"
