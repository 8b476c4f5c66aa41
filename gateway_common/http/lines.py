"""``HttpResponse.lines()``: a streamed body cut at line endings, for the SSE parser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class LineReader:
    """``readline()`` over chunks from ``read_some`` (``b""`` at the end).

    A line ends at LF or at CR (SSE allows both, and CR LF): a CR LF split over two chunks comes
    back as two pieces, which the SSE parser joins. Linear in the body's size whatever its line
    lengths (no rescanning of a long line as its chunks arrive).
    """

    __slots__ = ("_buffer", "_cr", "_eof", "_lf", "_partial", "_pos", "_read_some")

    def __init__(self, read_some: Callable[[], Awaitable[bytes]]) -> None:
        self._read_some = read_some
        self._buffer = b""
        self._pos = 0
        self._lf = -1
        self._cr = -1
        self._partial: list[bytes] = []
        self._eof = False

    def _line_end(self) -> int:
        """The index after the next line ending in the buffer at or after ``_pos``, or 0."""
        buffer, pos = self._buffer, self._pos
        if self._lf < pos:
            self._lf = buffer.find(b"\n", pos)
            if self._lf == -1:
                self._lf = len(buffer) + 1  # none: never search this buffer again
        if self._cr < pos:
            self._cr = buffer.find(b"\r", pos)
            if self._cr == -1:
                self._cr = len(buffer) + 1
        end = min(self._lf, self._cr)
        return end + 1 if end < len(buffer) else 0

    async def read_chunk(self) -> bytes:
        """What is buffered, or the next chunk as it arrives, whatever its line endings; ``b""`` at the end.
        For a reader that cuts lines itself (the SSE parser): one call per chunk instead of per line."""
        if self._partial or self._pos < len(self._buffer):
            self._partial.append(self._buffer[self._pos :])
            chunk = b"".join(self._partial)
            self._partial = []
            self._buffer, self._pos = b"", 0
            return chunk
        if self._eof:
            return b""
        chunk = await self._read_some()
        if not chunk:
            self._eof = True
        return chunk

    async def readline(self) -> bytes:
        while True:
            if self._pos < len(self._buffer):
                end = self._line_end()
                if end:
                    line = self._buffer[self._pos : end]
                    self._pos = end
                    if self._partial:
                        self._partial.append(line)
                        line = b"".join(self._partial)
                        self._partial = []
                    return line
                self._partial.append(self._buffer[self._pos :])
                self._pos = len(self._buffer)
            if self._eof:
                line = b"".join(self._partial)
                self._partial = []
                self._buffer, self._pos = b"", 0
                return line
            chunk = await self._read_some()
            if not chunk:
                self._eof = True
                self._buffer, self._pos = b"", 0
            else:
                self._buffer, self._pos, self._lf, self._cr = chunk, 0, -1, -1
