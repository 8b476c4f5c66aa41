"""What differs between the Anthropic Messages API and OpenAI chat completions, in one place.

Bodies pass through unchanged (unknown fields, ``thinking``, ``context_management``,
``role: system`` items all survive) except for two edits: the model name when a
route rewrites it, and, on OpenAI streams, ``stream_options.include_usage`` turned
on so the final usage chunk arrives and the request can be costed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway_common.json_depth import is_depth_refusal, nesting_exceeds
from llm_proxy.errors import Flavor, InvalidRequest
from policies.routing import ProviderKind


def _load(body: bytes, max_depth: int) -> Any:
    """Parse a body, refusing nesting beyond ``max_depth`` before anything else reads it."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if is_depth_refusal(exc.msg):
            raise _too_deep(max_depth) from None
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if nesting_exceeds(payload, max_depth):
        raise _too_deep(max_depth)
    return payload


def _too_deep(limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"The request body nests JSON objects and arrays deeper than this gateway's limit of {limit} levels"
    )


@dataclass(slots=True)
class ParsedRequest:
    payload: dict[str, Any]
    body: bytes
    model: str
    stream: bool
    max_tokens: int | None
    needs_rewrite: bool = False
    """True when the body must be re-encoded even if the model stays the same."""

    def body_for(self, upstream_model: str) -> bytes:
        if upstream_model == self.model and not self.needs_rewrite:
            return self.body
        payload = dict(self.payload)
        payload["model"] = upstream_model
        return orjson.dumps(payload)


@dataclass(frozen=True, slots=True)
class Dialect:
    name: Literal["messages", "chat.completions"]
    flavor: Flavor
    kind: ProviderKind
    path: str
    """Upstream path, Anthropic style (``/v1/...``; OpenAI base URLs include /v1)."""

    @property
    def openai(self) -> bool:
        return self.flavor == "openai"

    def parse(self, body: bytes, max_depth: int) -> ParsedRequest:
        if not body:
            raise InvalidRequest("The request body is empty; send a JSON object")
        payload = _load(body, max_depth)
        if not isinstance(payload, dict):
            raise InvalidRequest("The request body must be a JSON object")
        model = payload.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest("model: a model name (string) is required")
        if not isinstance(payload.get("messages"), list):
            raise InvalidRequest("messages: a list of messages is required")
        stream = payload.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidRequest("stream: must be true or false")
        raw_max = payload.get("max_completion_tokens", payload.get("max_tokens")) if self.openai else None
        if not self.openai:
            raw_max = payload.get("max_tokens")
        if raw_max is not None and (not isinstance(raw_max, int) or isinstance(raw_max, bool) or raw_max < 1):
            raise InvalidRequest("max_tokens: must be a positive integer")
        parsed = ParsedRequest(payload, body, model, stream, raw_max)
        if self.openai and stream:
            options = payload.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                payload["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
                parsed.needs_rewrite = True
        return parsed


MESSAGES = Dialect("messages", "anthropic", "anthropic", "/v1/messages")
CHAT_COMPLETIONS = Dialect("chat.completions", "openai", "openai-compatible", "/v1/chat/completions")


def parse_count_tokens(body: bytes, max_depth: int) -> tuple[dict[str, Any], str]:
    """A count_tokens body: any JSON object with a model."""
    payload = _load(body, max_depth) if body else None
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: a model name (string) is required")
    return payload, model
