"""The model proxy's routes, mounted on the gateway app next to /mcp.

The two model endpoints are bare ASGI apps (the hot path pays for no request or
response objects); the rest are small Starlette handlers. Resources come from
the lifespan state (``scope["state"]["llm"]``).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway_common.asgi import ClientGone
from llm_proxy.dialects import CHAT_COMPLETIONS, MESSAGES, Dialect, parse_count_tokens
from llm_proxy.errors import (
    NotFound,
    PermissionDenied,
    ProxyError,
    UpstreamFailed,
    error_response,
)
from llm_proxy.exchange import Exchange, authenticate, client_headers, read_body
from llm_proxy.forward import RETRY_STATUSES, UPSTREAM_ERRORS
from llm_proxy.runtime import LlmRuntime
from llm_proxy.upstream import describe_failure
from policies.bounds import echo
from policies.snapshot import ModelRefused

COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


class ModelEndpoint:
    """POST /v1/messages or /v1/chat/completions."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt: LlmRuntime = scope["state"]["llm"]
        await Exchange(rt, self.dialect, scope).handle(receive, send)


class CountTokensEndpoint:
    """POST /v1/messages/count_tokens: key and model checks, routing and fallbacks; no limits or spend."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt: LlmRuntime = scope["state"]["llm"]
        headers = client_headers(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            principal, snapshot = await authenticate(rt, headers)
            body = await read_body(receive, rt.settings.max_body_bytes, headers.get("content-length"))
            payload, model = parse_count_tokens(body, snapshot.policy.gateway.max_json_depth)
            decision = snapshot.route_model(principal, model, "anthropic")
            if isinstance(decision, ModelRefused) and decision.reason == "not_allowed":
                raise PermissionDenied(f"Key {principal.key_id!r} may not use model {echo(model)}")
            if isinstance(decision, ModelRefused):
                raise NotFound(f"Model {echo(model)} is not served by this gateway's Anthropic providers")
            targets = decision.targets
            failures = []
            for target in targets:
                provider = rt.providers[target.provider]
                upstream_body = (
                    body if target.model == model else orjson.dumps({**payload, "model": target.model})
                )
                try:
                    async with await provider.send(
                        COUNT_TOKENS_PATH, query, upstream_body, headers
                    ) as response:
                        answer = await response.read()
                except UPSTREAM_ERRORS as exc:
                    failures.append(f"{provider.name}: {describe_failure(exc)}")
                    continue
                if response.status in RETRY_STATUSES:
                    failures.append(f"{provider.name}: HTTP {response.status}")
                    continue
                answer = rt.redact(answer) if response.status >= 400 else answer
                content_type = response.headers.get("content-type", "application/json").encode("latin-1")
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": [
                            (b"content-type", content_type),
                            (b"content-length", str(len(answer)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": answer})
                return
            raise UpstreamFailed(f"No provider could count tokens ({'; '.join(failures)})")
        except ClientGone:
            return
        except ProxyError as exc:
            status, error_headers, error_body = error_response(exc, "anthropic")
            await send({"type": "http.response.start", "status": status, "headers": error_headers})
            await send({"type": "http.response.body", "body": error_body})


def _model_entry(model: str, provider: str) -> dict[str, Any]:
    # Both shapes at once: Anthropic's (type, display_name, created_at), OpenAI's (object, created, owned_by).
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "1970-01-01T00:00:00Z",
        "object": "model",
        "created": 0,
        "owned_by": provider,
    }


async def list_models(request: Request) -> Response:
    """GET /v1/models: the models this key may use, in a shape both Anthropic and OpenAI clients read."""
    rt: LlmRuntime = request.state.llm
    openai = "anthropic-version" not in request.headers and "x-api-key" not in request.headers
    headers = {
        name: request.headers[name] for name in ("x-api-key", "authorization") if name in request.headers
    }
    try:
        principal, snapshot = await authenticate(rt, headers)
    except ProxyError as exc:
        status, error_headers, body = error_response(exc, "openai" if openai else "anthropic")
        return Response(body, status, {k.decode(): v.decode() for k, v in error_headers})
    data = [_model_entry(model, provider) for model, provider in snapshot.router.listed_models(principal)]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


async def root(request: Request) -> Response:
    """GET and HEAD / answer 200 (Claude Code probes the base URL)."""
    return JSONResponse({"status": "ok", "service": "mcp-gateway"})


def llm_fast_paths() -> dict[str, ASGIApp]:
    """POST endpoints the app may dispatch before its middleware (they answer every error themselves)."""
    return {"/v1/messages": ModelEndpoint(MESSAGES), "/v1/chat/completions": ModelEndpoint(CHAT_COMPLETIONS)}


def llm_routes() -> list[BaseRoute]:
    return [
        Route("/v1/messages", ModelEndpoint(MESSAGES), methods=["POST"]),
        Route(COUNT_TOKENS_PATH, CountTokensEndpoint(), methods=["POST"]),
        Route("/v1/chat/completions", ModelEndpoint(CHAT_COMPLETIONS), methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/", root, methods=["GET", "HEAD"]),
    ]
