"""prompts/get and completion/complete: forwarded to the server that owns the prompt or template.

Prompts are named like tools (``<server><sep><prompt>``); a prompt the key may not see and one
that does not exist get the same ``-32602 Unknown prompt``. A completion names a prompt
(``ref/prompt``) or a resource template by its gateway URI (``ref/resource``) and is mapped back
the same way, with the same answers for hidden and missing ones; a server that offers no
completions gets no request, and the client an empty completion. Both are audited, with kinds
``prompt`` and ``completion``.
"""

from __future__ import annotations

from typing import Any

from mcp_gateway.errors import InvalidParams, UnknownPrompt, UnknownResource
from mcp_gateway.hub import Binding
from mcp_gateway.server.context import RequestContext
from mcp_gateway.server.forwarding import Audited, request_upstream, upstream_params
from mcp_gateway.server.links import expose_content_uris

JsonObject = dict[str, Any]
EMPTY_COMPLETION: JsonObject = {"completion": {"values": [], "hasMore": False}}


async def get_prompt(ctx: RequestContext, params: JsonObject) -> JsonObject:
    name = params.get("name")
    arguments = params.get("arguments")
    async with Audited(ctx, "prompt", name if isinstance(name, str) else repr(name), arguments) as audit:
        if not isinstance(name, str):
            raise InvalidParams('prompts/get needs "name" (a string)')
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidParams('prompts/get "arguments" must be an object')
        binding, permitted = ctx.runtime.hub.lookup_prompt(name, ctx.grant)
        if binding is None:
            raise UnknownPrompt(name)
        audit.resolved(binding)
        if not permitted:
            raise UnknownPrompt(name)  # the same answer as a prompt that does not exist
        forwarded = upstream_params(params, "name", binding.name)
        result = await request_upstream(
            audit, binding, "prompts/get", forwarded, target=name, caller_params=params
        )
        messages = result.get("messages")
        if isinstance(messages, list):
            result = dict(result)
            result["messages"] = [_expose_message(m, binding.server) for m in messages]
        audit.succeeded(result)
        return result


def _expose_message(message: Any, server: str) -> Any:
    if not isinstance(message, dict) or not isinstance(message.get("content"), dict):
        return message
    exposed = expose_content_uris(message["content"], server)
    if exposed is message["content"]:
        return message
    message = dict(message)
    message["content"] = exposed
    return message


async def complete(ctx: RequestContext, params: JsonObject) -> JsonObject:
    ref = params.get("ref")
    ref_type = ref.get("type") if isinstance(ref, dict) else None
    field = "uri" if ref_type == "ref/resource" else "name"
    name = ref.get(field) if isinstance(ref, dict) else None
    arguments = {k: params[k] for k in ("ref", "argument", "context") if k in params}
    async with Audited(ctx, "completion", name if isinstance(name, str) else repr(name), arguments) as audit:
        if (
            not isinstance(ref, dict)
            or ref_type not in ("ref/prompt", "ref/resource")
            or not isinstance(name, str)
        ):
            raise InvalidParams(
                'completion/complete needs "ref": {"type": "ref/prompt", "name": ...} '
                'or {"type": "ref/resource", "uri": ...}'
            )
        if not isinstance(params.get("argument"), dict):
            raise InvalidParams('completion/complete needs "argument" (an object)')
        binding, permitted = _completion_target(ctx, ref_type, name)
        unknown = UnknownPrompt(name) if ref_type == "ref/prompt" else UnknownResource(name)
        if binding is None:
            raise unknown
        audit.resolved(binding)
        if not permitted:
            raise unknown  # the same answer as a prompt or template that does not exist
        if "completions" not in binding.supervisor.offered:
            audit.succeeded(EMPTY_COMPLETION)
            return dict(EMPTY_COMPLETION)
        upstream_ref = dict(ref)
        upstream_ref[field] = binding.name
        result = await request_upstream(
            audit, binding, "completion/complete", upstream_params(params, "ref", upstream_ref)
        )
        audit.succeeded(result)
        return result


def _completion_target(ctx: RequestContext, ref_type: str, name: str) -> tuple[Binding | None, bool]:
    hub = ctx.runtime.hub
    if ref_type == "ref/prompt":
        return hub.lookup_prompt(name, ctx.grant)
    template = hub.templates.get(name)
    if template is not None:
        return template, ctx.grant.allows_resource(template.server, template.name)
    return hub.lookup_resource(name, ctx.grant)
