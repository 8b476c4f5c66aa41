"""tools/list, resources/list, resources/templates/list and prompts/list: one key's merged view.

Each answer is the caller's memoized view (`hub.view`) in its stable order, cut into pages of
``mcp.list_page_size``. The cursor is opaque to clients: it names the list and the last item
of the previous page, so a page boundary survives items coming and going in between. 2026
results say ``cacheScope: private`` (the view is the key's own) and the ``ttlMs`` left of the
freshest promise all contributing upstreams made (0 if one of them made none).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from bisect import bisect_right
from typing import Any

import orjson

from mcp_gateway.errors import InvalidParams
from mcp_gateway.server.context import RequestContext
from mcp_gateway.upstream.listing import SPECS, ListKind

logger = logging.getLogger("mcp_gateway.mcp")
JsonObject = dict[str, Any]
MAX_CURSOR_CHARS = 4096


def encode_cursor(kind: ListKind, after: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, after])).decode().rstrip("=")


def decode_cursor(kind: ListKind, cursor: Any) -> str:
    """The last key of the page before, from a cursor `encode_cursor` made for this list."""
    if isinstance(cursor, str) and len(cursor) <= MAX_CURSOR_CHARS:
        try:
            decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError):
            decoded = None
        if (
            isinstance(decoded, list)
            and len(decoded) == 2
            and decoded[0] == kind
            and isinstance(decoded[1], str)
        ):
            return decoded[1]
    raise InvalidParams(f"Invalid cursor for {SPECS[kind].method}")


def list_page(ctx: RequestContext, kind: ListKind, params: JsonObject) -> JsonObject:
    view = ctx.runtime.hub.view(kind, ctx.grant)
    items, keys = view.items, view.keys
    cursor = params.get("cursor")
    start = 0 if cursor is None else bisect_right(keys, decode_cursor(kind, cursor))
    size = ctx.snapshot.policy.mcp.list_page_size
    end = start + size
    whole = start == 0 and end >= len(items)
    result: JsonObject = {SPECS[kind].field: view.encoded if whole else items[start:end]}
    if end < len(items):
        result["nextCursor"] = encode_cursor(kind, keys[end - 1])
    if ctx.modern:
        result["ttlMs"] = view.ttl_ms(time.monotonic())
        result["cacheScope"] = "private"
    session = ctx.session
    if session is not None and start == 0:
        if kind == "tools":
            session.listed_signature = view.signature
        if session.surface is not None or kind != "tools":
            surface = session.surface_for(ctx.runtime.hub.new_surface)
            surface.listed[kind] = view.signature
    return result


async def list_tools(ctx: RequestContext, params: JsonObject) -> JsonObject:
    result = list_page(ctx, "tools", params)
    if params.get("cursor") is None and not ctx.runtime.hub.view("tools", ctx.grant).items:
        logger.warning(
            "key %s listed no tools: %s", ctx.principal.key_id, ctx.runtime.hub.explain_empty(ctx.grant)
        )
    return result


async def list_resources(ctx: RequestContext, params: JsonObject) -> JsonObject:
    return list_page(ctx, "resources", params)


async def list_resource_templates(ctx: RequestContext, params: JsonObject) -> JsonObject:
    return list_page(ctx, "resource_templates", params)


async def list_prompts(ctx: RequestContext, params: JsonObject) -> JsonObject:
    return list_page(ctx, "prompts", params)
