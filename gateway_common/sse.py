"""Incremental Server-Sent Events parsing for streamed MCP responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class LineSource(Protocol):
    async def readline(self) -> bytes: ...


async def iter_sse_data(source: LineSource) -> AsyncIterator[bytes]:
    """Yield the ``data`` payload of every event; comments, ids and event names are skipped.

    Follows the SSE rules that matter here: multi-line data is joined with
    newlines, a blank line ends an event, CR LF and LF both end a line.
    """
    data: list[bytes] = []
    while True:
        line = await source.readline()
        if not line:
            if data:
                yield b"\n".join(data)
            return
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                yield b"\n".join(data)
                data = []
            continue
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
