"""How much of a client's string the gateway echoes in an error or stores in a row.

Everything a client sends is bounded before it is echoed back (in an error
message) or stored (in an audit or ledger row): a 1 MB tool name must cost
neither a 1 MB error nor a 1 MB row. The sizes are documented in README.md.
"""

from __future__ import annotations

from typing import overload

MAX_NAME_CHARS = 256
"""Tool, prompt and model names, resource URIs: as stored in a row."""
MAX_ECHO_CHARS = 128
"""Any client string quoted inside an error message."""
MAX_ID_CHARS = 128
"""JSON-RPC ids, session ids, client names and versions, user agents."""
MAX_ERROR_CHARS = 1000
"""Error texts stored in a row."""
ELLIPSIS = "…"


@overload
def clip(text: str, limit: int) -> str: ...


@overload
def clip(text: None, limit: int) -> None: ...


@overload
def clip(text: str | None, limit: int) -> str | None: ...


def clip(text: str | None, limit: int) -> str | None:
    """``text`` when it fits in ``limit`` characters, else its start and an ellipsis (``limit`` in all)."""
    if text is None or len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def echo(text: str) -> str:
    """A client string as quoted in an error message: ``repr`` of at most `MAX_ECHO_CHARS` characters."""
    return repr(clip(text, MAX_ECHO_CHARS))
