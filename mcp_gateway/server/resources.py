"""resources/read, and resources/subscribe and resources/unsubscribe (2025-11-25 sessions).

A read names a gateway URI (``mcpgw://<server>/<upstream URI>``, `policies.resource_uris`): a
listed resource, one filled in from a template, or any other URI of a server the key may read.
A URI the key may not read and one that does not exist get the same ``-32602 Unknown resource``,
byte for byte, whether the gateway could not resolve it or the upstream said it has no such
resource (the audit row tells them apart). Every read is audited with kind ``resource``.

Subscriptions accept any URI (a hidden or missing one simply never gets an update, as the
2026-07-28 specification has it for listen streams); updates arrive on the session's GET stream.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mcp_gateway.errors import InvalidParams, UnknownResource, UpstreamRpcError
from mcp_gateway.server.context import RequestContext
from mcp_gateway.server.forwarding import Audited, request_upstream, upstream_params
from mcp_gateway.server.links import expose_item_uri
from mcp_gateway.subscriptions import MAX_SUBSCRIPTIONS
from policies.bounds import MAX_ERROR_CHARS, MAX_NAME_CHARS, clip

if TYPE_CHECKING:
    from mcp_gateway.runtime import GatewayRuntime
    from mcp_gateway.server.sessions import Session

logger = logging.getLogger("mcp_gateway")

JsonObject = dict[str, Any]
NOT_FOUND_CODES = frozenset({-32602, -32002})
"""How upstreams say "no such resource" (2026-07-28 and SEP-2164; the older -32002)."""


def _uri(params: JsonObject, method: str) -> str:
    uri = params.get("uri")
    if not isinstance(uri, str):
        raise InvalidParams(f'{method} needs "uri" (a string)')
    return uri


async def read_resource(ctx: RequestContext, params: JsonObject) -> JsonObject:
    uri = params.get("uri")
    async with Audited(ctx, "resource", uri if isinstance(uri, str) else repr(uri), None) as audit:
        uri = _uri(params, "resources/read")
        binding, permitted = ctx.runtime.hub.lookup_resource(uri, ctx.grant)
        if binding is None:
            raise UnknownResource(uri)
        audit.resolved(binding)
        if not permitted:
            raise UnknownResource(uri)  # the same answer as a resource that does not exist
        forwarded = upstream_params(params, "uri", binding.name)
        try:
            result = await request_upstream(
                audit, binding, "resources/read", forwarded, target=uri, caller_params=params
            )
        except UpstreamRpcError as exc:
            if exc.code not in NOT_FOUND_CODES:
                raise
            audit.row["error"] = clip(
                f"Unknown resource: the upstream answered {exc.code}: {exc.message}", MAX_ERROR_CHARS
            )
            raise UnknownResource(uri) from None
        result = dict(result)
        contents = result.get("contents")
        if isinstance(contents, list):
            result["contents"] = [expose_item_uri(item, binding.server) for item in contents]
        if result.get("resultType") == "input_required":
            pass  # not an answer yet: nothing to cache
        elif ctx.modern:
            # The answer depends on the key's permissions: never shareable across keys.
            ttl = result.get("ttlMs")
            result["ttlMs"] = ttl if type(ttl) is int and ttl >= 0 else 0
            result["cacheScope"] = "private"
        else:
            result.pop("ttlMs", None)
            result.pop("cacheScope", None)
        audit.succeeded(result)
        return result


async def subscribe(ctx: RequestContext, params: JsonObject) -> JsonObject:
    uri = _uri(params, "resources/subscribe")
    session = ctx.session
    if session is None:  # the 2026-07-28 era has no such method; its dispatch table lacks it
        raise InvalidParams("resources/subscribe needs a session")
    if len(uri) > MAX_NAME_CHARS * 16:
        raise InvalidParams("resources/subscribe: the URI is too long")
    hub = ctx.runtime.hub
    surface = session.surface_for(hub.new_surface)
    if not await hub.subscribe(surface, [uri], ctx.grant):
        raise InvalidParams(f"A session holds at most {MAX_SUBSCRIPTIONS} resource subscriptions")
    await ctx.runtime.subscriptions.add(session.id, uri)
    ctx.runtime.sessions.subscriptions_changed(session.id)
    return {}


async def unsubscribe(ctx: RequestContext, params: JsonObject) -> JsonObject:
    uri = _uri(params, "resources/unsubscribe")
    session = ctx.session
    if session is not None:
        if session.surface is not None:
            await ctx.runtime.hub.unsubscribe(session.surface, uri)
        await ctx.runtime.subscriptions.remove(session.id, uri)
        ctx.runtime.sessions.subscriptions_changed(session.id)
    return {}


async def restore_subscriptions(runtime: GatewayRuntime, session: Session) -> None:
    """A session rebuilt here from its signed id (its client came back through another replica), or
    whose subscriptions another replica changed: make its subscriptions here what the ledger says
    (`subscription_ledger`)."""
    session.restore_pending = False
    wanted = await runtime.subscriptions.uris(session.id)
    if wanted is None or (not wanted and session.surface is None):
        return  # unknown (one process, or Redis away): what this replica holds stays as it is
    hub = runtime.hub
    surface = session.surface_for(hub.new_surface)
    before = set(surface.requested)
    for uri in sorted(before - set(wanted)):
        await hub.unsubscribe(surface, uri)
    await hub.subscribe(surface, wanted[:MAX_SUBSCRIPTIONS], runtime.state.current.grant(session.principal))
    if surface.requested != before:  # the periodic re-read (`RESYNC_SECONDS`) mostly finds nothing new
        logger.info("session %s: %d resource subscriptions restored", session.id[:8], len(surface.requested))
