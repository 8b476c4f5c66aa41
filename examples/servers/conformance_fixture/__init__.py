"""The server the official MCP conformance suite expects to find (`@modelcontextprotocol/conformance`).

The suite's server scenarios call tools, read resources and get prompts with fixed names and check
fixed contents (``test_simple_text``, ``test://static-text``, ``test_simple_prompt``, ...). This
package serves exactly those, on the `mcp` SDK, over streamable HTTP or stdio, so the suite can
run against it directly and through the gateway. ``python -m examples.servers.conformance_fixture``.
"""

from examples.servers.conformance_fixture.server import build_server

__all__ = ["build_server"]
