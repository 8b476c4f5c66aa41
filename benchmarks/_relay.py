"""A bare TCP relay: the floor under any gateway that runs in its own process.

    python benchmarks/_relay.py LISTEN_PORT UPSTREAM_PORT

Each connection accepted on LISTEN_PORT gets its own connection to UPSTREAM_PORT and the bytes are
copied both ways as they arrive: no parsing, no key, no policy, no audit, on the event loop the
gateway runs (uvloop where installed, as uvicorn picks it). What a request pays for it is what a
second process on the path costs on this machine (two more loopback writes and two more wake-ups),
at p50 and at p99; the benchmarks measure the gateway against it in the same run.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast


class _Side(asyncio.Protocol):
    """One end of a relayed connection; ``peer`` is the other end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.early.append(data)  # the upstream connection is still being opened

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()


class _Client(_Side):
    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.opening: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.opening = asyncio.ensure_future(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = _Side()
        upstream.peer = self
        try:
            await loop.create_connection(lambda: upstream, "127.0.0.1", self.upstream_port)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.peer = upstream
        assert upstream.transport is not None
        for data in self.early:
            upstream.transport.write(data)
        self.early.clear()


async def serve(listen_port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(upstream_port), "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


def main() -> None:
    listen_port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(listen_port, upstream_port))
    else:
        uvloop.run(serve(listen_port, upstream_port))


if __name__ == "__main__":
    main()
