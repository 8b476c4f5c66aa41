"""Opening TCP sockets with Happy Eyeballs (RFC 8305) for `httpclient.HttpPool`."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
from collections.abc import Sequence
from typing import Any

_AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
HAPPY_EYEBALLS_DELAY = 0.25
"""Seconds before the next address is tried while the previous one has not answered (RFC 8305)."""


async def open_socket(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected TCP socket to ``host``; with several addresses (IPv6 and IPv4), Happy Eyeballs.

    uvloop's ``create_connection`` tries addresses one after the other, so an address that swallows
    SYNs would spend the whole connect timeout; here the next address starts after a short delay.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos: Sequence[_AddrInfo] = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        infos = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    if len(infos) == 1:
        return await _connect_socket(loop, infos[0])
    first = [info for info in infos if info[0] == infos[0][0]]
    other = [info for info in infos if info[0] != infos[0][0]]
    ordered = [info for pair in itertools.zip_longest(first, other) for info in pair if info is not None]
    pending: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    try:
        while ordered or pending:
            if ordered:
                pending.add(loop.create_task(_connect_socket(loop, ordered.pop(0))))
            done, pending = await asyncio.wait(
                pending, timeout=HAPPY_EYEBALLS_DELAY if ordered else None, return_when="FIRST_COMPLETED"
            )
            for task in done:
                error = task.exception()
                if error is None:
                    pending |= done - {task}  # a second winner is closed below
                    return task.result()
                errors.append(error)
        raise errors[0]
    finally:
        for task in pending:
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
            task.cancel()


async def _connect_socket(loop: asyncio.AbstractEventLoop, info: _AddrInfo) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock
