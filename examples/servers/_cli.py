"""Command line shared by the example servers, so each one only declares its own flags.

Every server runs over stdio (the default, what Claude Code launches) or streamable
HTTP at ``/mcp`` on loopback (what the gateway dials as a remote upstream).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from mcp.server import MCPServer

MCP_PATH = "/mcp"


def base_parser(module: str, description: str, default_port: int) -> argparse.ArgumentParser:
    """Build a parser holding the transport flags; the caller adds its server's own flags."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    group = parser.add_argument_group("transport")
    group.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio (default) or streamable HTTP served at " + MCP_PATH,
    )
    group.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default: 127.0.0.1)")
    group.add_argument("--port", type=int, default=default_port, help=f"HTTP port (default: {default_port})")
    return parser


def serve(server: MCPServer, args: argparse.Namespace) -> None:
    """Run ``server`` on the transport chosen by ``args`` until it is stopped."""
    if args.transport == "http":
        server.run("streamable-http", host=args.host, port=args.port, streamable_http_path=MCP_PATH)
    else:
        server.run("stdio")


def main(
    parser: argparse.ArgumentParser,
    build: Callable[[argparse.Namespace], MCPServer],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse ``argv``, build the server from the parsed flags and serve it."""
    args = parser.parse_args(argv)
    try:
        server = build(args)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    serve(server, args)
