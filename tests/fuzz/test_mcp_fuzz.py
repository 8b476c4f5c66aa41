"""Fuzz /mcp in both protocol eras over a real socket (see `tests.fuzz.checks` for the invariants).

Each era is fuzzed twice: wrong anywhere (headers, framing, session, message), and wrong only
inside the JSON-RPC message of a request whose transport is right (so more examples reach the
method handlers: tools/call, cancellation, initialize).
"""

from __future__ import annotations

import pytest

from .live import LiveGateway
from .runner import fuzz
from .strategies import JSONRPC_PARTS, legacy_mcp, modern_mcp, other_routes, raw_mcp

pytestmark = pytest.mark.fuzz


def test_modern_requests(gateway: LiveGateway) -> None:
    fuzz(gateway, modern_mcp())


def test_modern_tools_call(gateway: LiveGateway) -> None:
    fuzz(gateway, modern_mcp(focus=(*JSONRPC_PARTS, "envelope", "name-header"), methods=("tools/call",)))


def test_legacy_requests(gateway: LiveGateway) -> None:
    fuzz(gateway, legacy_mcp())


def test_legacy_messages(gateway: LiveGateway) -> None:
    fuzz(gateway, legacy_mcp(focus=(*JSONRPC_PARTS, "session")))


def test_raw_bodies(gateway: LiveGateway) -> None:
    fuzz(gateway, raw_mcp(), share=0.5)


def test_other_routes(gateway: LiveGateway) -> None:
    fuzz(gateway, other_routes(), share=0.3)
