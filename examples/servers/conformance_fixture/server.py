"""Builds the conformance fixture server and runs it (stdio, or streamable HTTP at /mcp).

Over HTTP it keeps an in-memory event store, so a client that loses an SSE stream mid-call can
resume it with ``Last-Event-ID`` (the suite's SSE polling scenario).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence

from mcp.server import MCPServer
from mcp.server.mcpserver import RequestStateSecurity
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp_types import JSONRPCMessage

from examples.servers import _cli
from examples.servers.conformance_fixture import catalogue, interactive, tools

NAME = "mcp-conformance-fixture"


def build_server() -> MCPServer:
    """A fresh server with every tool, resource, prompt and handler the suite's scenarios use."""
    server = MCPServer(
        name=NAME,
        version="1.0.0",
        # 2026-07-28 input-required flows echo requestState; sealing it lets tampering be refused.
        request_state_security=RequestStateSecurity.ephemeral(),
    )
    tools.register(server)
    interactive.register(server)
    catalogue.register(server)
    return server


class MemoryEventStore(EventStore):
    """Every event of every stream, numbered, so a stream can be replayed after an id."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, JSONRPCMessage | None]] = []
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        event_id = str(next(self._ids))
        self._events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        stream = next((s for s, e, _ in self._events if e == last_event_id), None)
        if stream is None:
            return None
        after = int(last_event_id)
        for stream_id, event_id, message in self._events:
            if stream_id == stream and int(event_id) > after and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.base_parser(
        "examples.servers.conformance_fixture",
        "The tools, resources and prompts the MCP conformance suite's server scenarios expect.",
        8110,
    )
    args = parser.parse_args(argv)
    server = build_server()
    if args.transport == "http":
        serve_http(server, args)
    else:
        server.run("stdio")


def serve_http(server: MCPServer, args: argparse.Namespace) -> None:
    server.run(
        "streamable-http",
        host=args.host,
        port=args.port,
        streamable_http_path=_cli.MCP_PATH,
        event_store=MemoryEventStore(),
        retry_interval=100,
    )
