"""A raw HTTP/1.1 client for fuzzing: sends any bytes, reads the answer strictly (h11).

Requests are written byte for byte as the fuzzer made them (duplicate headers,
lying Content-Length, junk header values, chunked bodies), so nothing a client
library would clean up gets cleaned up. Answers are parsed with h11 in client
mode, which refuses a malformed response; a connection that closes before a
whole answer arrived raises `NoAnswer`.
"""

from __future__ import annotations

import contextlib
import select
import socket
from dataclasses import dataclass, field

import h11

ANSWER_TIMEOUT = 30.0
"""Seconds to wait for an answer before calling it lost (far above any answer's real time)."""


class NoAnswer(AssertionError):
    """The server closed the connection, or went silent, without a complete answer."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool = True
    """False for an open-ended stream that was read only up to its headers."""
    framing: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()


def build_request(
    method: str,
    target: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    content_length: bytes | bool | None = True,
    chunked: bool = False,
) -> bytes:
    """The raw request. ``content_length``: True for the honest value, bytes for a lie, None/False for none."""
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1")]
    lines += [name + b": " + value for name, value in headers]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        payload = b"".join(
            f"{len(body[i : i + 4096]):x}".encode() + b"\r\n" + body[i : i + 4096] + b"\r\n"
            for i in range(0, len(body), 4096)
        )
        body = payload + b"0\r\n\r\n"
    elif content_length is True:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    elif isinstance(content_length, bytes):
        lines.append(b"Content-Length: " + content_length)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class WireClient:
    """One keep-alive connection to the server, reopened whenever the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self._sock: socket.socket | None = None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _connection(self, fresh: bool) -> tuple[socket.socket, bool]:
        """A usable socket and whether it is a reused one."""
        if fresh or (self._sock is not None and _closed_by_peer(self._sock)):
            self.close()
        if self._sock is not None:
            return self._sock, True
        sock = socket.create_connection(self.address, timeout=ANSWER_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock, False

    def exchange(
        self, method: str, raw: bytes, *, open_ended: bool = False, fresh: bool = False, keep: bool = True
    ) -> Answer:
        """Send one raw request and read its answer.

        ``open_ended``: a stream that may never end (GET stream, subscriptions/listen): read up to
        the response head, then drop the connection. ``fresh``: on a new connection (framing lies
        leave bytes behind, so those requests get a connection of their own). ``keep=False``:
        close the connection after the answer.
        """
        sock, reused = self._connection(fresh)
        try:
            answer = _read_answer(sock, method, raw, open_ended)
        except NoAnswer:
            self.close()
            if not reused:
                raise
            # A kept-alive connection the server closed just as we sent (its idle timeout): once more,
            # on a new connection. A request that really loses its answer loses it there too.
            sock, _ = self._connection(True)
            try:
                answer = _read_answer(sock, method, raw, open_ended)
            except NoAnswer:
                self.close()
                raise
        if not keep or not answer.complete or "close" in answer.framing:
            self.close()
        return answer


def _closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _read_answer(sock: socket.socket, method: str, raw: bytes, open_ended: bool) -> Answer:
    parser = h11.Connection(h11.CLIENT)
    # h11 tracks the exchange from a stand-in request; the real bytes go out below unchanged.
    # (Only HEAD changes how an answer is read; any other method, valid or not, reads like POST.)
    stand_in = "HEAD" if method == "HEAD" else "POST"
    parser.send(h11.Request(method=stand_in, target="/", headers=[("Host", "fuzz"), ("Content-Length", "0")]))
    parser.send(h11.EndOfMessage())
    try:
        sock.sendall(raw)
    except OSError as exc:
        # The server may answer (e.g. 413) and close before it has read a large body: read that answer.
        if not isinstance(exc, BrokenPipeError | ConnectionResetError):
            raise NoAnswer(f"could not send the request: {exc!r}") from None
    status: int | None = None
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []
    framing: list[str] = []
    eof = False
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            if eof:
                raise NoAnswer(f"the connection closed in the middle of the answer ({exc})") from None
            raise AssertionError(f"malformed HTTP answer from the server: {exc}") from None
        if event is h11.NEED_DATA:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise NoAnswer(f"no answer within {ANSWER_TIMEOUT:g} s") from None
            except OSError as exc:
                data = b""
                framing.append(f"recv failed: {exc!r}")
            eof = not data
            parser.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers]
            if open_ended and any(k == "content-type" and "event-stream" in v for k, v in headers):
                return Answer(status, headers, b"", complete=False, framing=framing)
            continue
        if isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
            continue
        if isinstance(event, h11.EndOfMessage):
            if parser.their_state is h11.MUST_CLOSE or any(
                k == "connection" and "close" in v.lower() for k, v in headers
            ):
                framing.append("close")
            assert status is not None
            return Answer(status, headers, b"".join(chunks), framing=framing)
        if isinstance(event, h11.ConnectionClosed):
            got = f"status {status} and {sum(map(len, chunks))} body bytes" if status else "nothing"
            raise NoAnswer(f"the server closed the connection after sending {got}")
