"""JSON-RPC 2.0 message helpers on orjson (the hot path parses and writes every message)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway_common.json_depth import is_depth_refusal, nesting_exceeds
from mcp_gateway.errors import InvalidRequest, JsonRpcId, ParseError


def too_deep(limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid Request: JSON objects and arrays are nested deeper than this gateway's limit of {limit} "
        "levels (gateway.max_json_depth)"
    )


def parse_message(body: bytes, *, max_depth: int) -> dict[str, Any]:
    """Decode one JSON-RPC request or notification; anything else is a clear error.

    Nesting beyond ``max_depth`` is refused here, before anything walks the message.
    """
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if is_depth_refusal(exc.msg):
            raise too_deep(max_depth) from None
        raise ParseError(f"Parse error: body is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if nesting_exceeds(message, max_depth):
        raise too_deep(max_depth)
    if isinstance(message, list):
        raise InvalidRequest("Invalid Request: JSON-RPC batches are not supported; send one message per POST")
    if not isinstance(message, dict):
        raise InvalidRequest("Invalid Request: body must be a JSON-RPC object")
    if message.get("jsonrpc") != "2.0":
        raise InvalidRequest('Invalid Request: "jsonrpc" must be "2.0"')
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            raise InvalidRequest('Invalid Request: "method" must be a non-empty string')
        request_id = message.get("id")
        if "id" in message and (isinstance(request_id, bool) or not isinstance(request_id, str | int)):
            raise InvalidRequest('Invalid Request: "id" must be a string or an integer')
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequest('Invalid Request: "params" must be an object')
        return message
    if "result" in message or "error" in message:
        return message
    raise InvalidRequest('Invalid Request: missing "method"')


def response(request_id: JsonRpcId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_response(request_id: JsonRpcId, error: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error}
