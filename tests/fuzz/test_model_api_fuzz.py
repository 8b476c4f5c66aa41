"""Fuzz the model API over a real socket: /v1/messages fully, the other two endpoints briefly.

/v1/messages is fuzzed twice: wrong anywhere (headers, framing, key, body), and wrong only in
the body of a request whose transport is right (so more examples reach the provider).
"""

from __future__ import annotations

import pytest

from .live import LiveGateway
from .runner import fuzz
from .strategies import MODEL_BODY_PARTS, model_request

pytestmark = pytest.mark.fuzz


def test_messages(gateway: LiveGateway) -> None:
    fuzz(gateway, model_request("/v1/messages"))


def test_messages_bodies(gateway: LiveGateway) -> None:
    fuzz(gateway, model_request("/v1/messages", focus=MODEL_BODY_PARTS))


def test_chat_completions(gateway: LiveGateway) -> None:
    fuzz(gateway, model_request("/v1/chat/completions"), share=0.3)


def test_count_tokens(gateway: LiveGateway) -> None:
    fuzz(gateway, model_request("/v1/messages/count_tokens"), share=0.3)
