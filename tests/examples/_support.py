"""Helpers shared by the example-server tests."""

from __future__ import annotations

import sys
from pathlib import Path

from mcp import StdioServerParameters
from mcp.types import CallToolResult, TextContent

REPO_ROOT = Path(__file__).resolve().parents[2]


def stdio_params(module: str, *args: str) -> StdioServerParameters:
    """Launch ``python -m examples.servers.<module>`` the way Claude Code or the gateway would."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", f"examples.servers.{module}", *args], cwd=REPO_ROOT
    )


def error_text(result: CallToolResult) -> str:
    """The message of a tool error result; fails the test if the call succeeded."""
    assert result.is_error, f"expected a tool error, got {result}"
    assert isinstance(result.content[0], TextContent)
    return result.content[0].text


def text(result: CallToolResult) -> str:
    """The text of a successful tool result; fails the test if the call errored."""
    assert not result.is_error, f"unexpected tool error: {result.content}"
    assert isinstance(result.content[0], TextContent)
    return result.content[0].text
