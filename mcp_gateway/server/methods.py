"""The MCP methods the gateway answers itself, and the shaping of results per protocol era."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from mcp_gateway import __version__
from mcp_gateway.errors import InvalidParams, MethodNotFound
from mcp_gateway.server import lists, prompts, resources
from mcp_gateway.server.context import RequestContext
from mcp_gateway.server.toolcall import call_tool
from policies import GatewayPolicy
from policies.resource_uris import PREFIX

logger = logging.getLogger("mcp_gateway.mcp")
JsonObject = dict[str, Any]
Handler = Callable[[RequestContext, JsonObject], Awaitable[JsonObject]]

SERVER_INFO: JsonObject = {"name": "mcp-gateway", "title": "MCP Gateway", "version": __version__}
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
CAPABILITIES: JsonObject = {"tools": {"listChanged": True}}
"""What the gateway offers with no upstream known yet; `UpstreamHub.capabilities` is the live value."""
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def instructions(policy: GatewayPolicy) -> str:
    configured = policy.mcp.instructions
    if configured:
        return configured
    separator = policy.mcp.tool_naming.separator
    return (
        "MCP Gateway: tools, prompts and resources from several MCP servers behind one endpoint. "
        f"Tool and prompt names are <server>{separator}<name>; "
        f"resource URIs are {PREFIX}<server>/<the server's own URI>. "
        "Every call and read is checked against your key and audited."
    )


def negotiate_version(requested: Any) -> str:
    if isinstance(requested, str) and requested in HANDSHAKE_PROTOCOL_VERSIONS:
        return requested
    return LATEST_HANDSHAKE_VERSION


def initialize_result(
    policy: GatewayPolicy, protocol_version: str, capabilities: JsonObject | None = None
) -> JsonObject:
    return {
        "protocolVersion": protocol_version,
        "capabilities": CAPABILITIES if capabilities is None else capabilities,
        "serverInfo": SERVER_INFO,
        "instructions": instructions(policy),
    }


async def _ping(ctx: RequestContext, params: JsonObject) -> JsonObject:
    return {}


async def _set_level(ctx: RequestContext, params: JsonObject) -> JsonObject:
    if params.get("level") not in LOG_LEVELS:
        raise InvalidParams(f"logging/setLevel needs level, one of: {', '.join(LOG_LEVELS)}")
    if ctx.session is not None:
        ctx.session.log_level = params["level"]  # upstream log messages below it are not relayed
    return {}


async def _discover(ctx: RequestContext, params: JsonObject) -> JsonObject:
    return {
        "supportedVersions": list(MODERN_PROTOCOL_VERSIONS),
        "capabilities": ctx.runtime.hub.capabilities,
        "instructions": instructions(ctx.snapshot.policy),
        "cacheScope": "private",
        "ttlMs": 0,
    }


async def _call_tool(ctx: RequestContext, params: JsonObject) -> JsonObject:
    return await call_tool(ctx, params)


_COMMON: dict[str, Handler] = {
    "tools/list": lists.list_tools,
    "tools/call": _call_tool,
    "resources/list": lists.list_resources,
    "resources/templates/list": lists.list_resource_templates,
    "resources/read": resources.read_resource,
    "prompts/list": lists.list_prompts,
    "prompts/get": prompts.get_prompt,
    "completion/complete": prompts.complete,
}
LEGACY_METHODS: dict[str, Handler] = {
    **_COMMON,
    "ping": _ping,
    "logging/setLevel": _set_level,
    "resources/subscribe": resources.subscribe,
    "resources/unsubscribe": resources.unsubscribe,
}
MODERN_METHODS: dict[str, Handler] = {**_COMMON, "server/discover": _discover}
"""2026-07-28 has no ping, no logging/setLevel and no resources/(un)subscribe (SEP-2575: removed
methods are answered -32601 with HTTP 404); ``subscriptions/listen`` (`streams`) carries resource
subscriptions."""


async def dispatch(ctx: RequestContext, method: str, params: JsonObject) -> JsonObject:
    table = MODERN_METHODS if ctx.modern else LEGACY_METHODS
    handler = table.get(method)
    if handler is None:
        raise MethodNotFound(method)
    return shape_result(ctx, await handler(ctx, params))


def shape_result(ctx: RequestContext, result: JsonObject) -> JsonObject:
    """Stamp our identity on 2026 results (never the upstream's); keep 2025 results plain."""
    result = dict(result)
    meta = result.get("_meta")
    if ctx.modern:
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta[SERVER_INFO_KEY] = SERVER_INFO
        result["_meta"] = meta
        result.setdefault("resultType", "complete")
    else:
        if isinstance(meta, dict) and SERVER_INFO_KEY in meta:
            meta = {k: v for k, v in meta.items() if k != SERVER_INFO_KEY}
            if meta:
                result["_meta"] = meta
            else:
                del result["_meta"]
        if result.get("resultType") == "complete":
            del result["resultType"]
    return result
