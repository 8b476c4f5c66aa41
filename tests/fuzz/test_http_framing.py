"""Broken HTTP framing on a raw socket: every request still gets an answer (no 5xx, no dropped
connection, no hang) and the gateway keeps serving (see `tests.fuzz.framing`)."""

from __future__ import annotations

import pytest

from .framing import broken_http
from .live import LiveGateway
from .runner import fuzz

pytestmark = pytest.mark.fuzz


def test_broken_framing(gateway: LiveGateway) -> None:
    fuzz(gateway, broken_http(), share=0.5)
