"""/healthz (the process answers) and /readyz (what each upstream and each row writer is doing).

Anyone may learn the readiness status (a load balancer needs it); the detail
behind it (upstream PIDs, their stderr, errors, audit state) is for operators:
a request with an admin token, or, unless ``gateway.health_details: token``, a
peer on this host. Behind a reverse proxy on the same host every peer is
loopback, so such deployments set ``token``.

A shared counter store (Redis) that cannot be reached makes the status ``degraded``
(still 200), not unready: every replica shares that Redis, so taking them all out
of the load balancer helps nobody, and what requests get meanwhile is the policy's
``counters.on_unavailable`` (model requests with budgets refused by default), which
the ``counters`` detail shows next to the store's state.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway_app.admin_guesses import TooManyWrongTokens, client_address, guesses_of
from gateway_common.auth import bearer_token
from gateway_common.writers.batch import BatchWriter
from mcp_gateway.runtime import GatewayRuntime
from policies.admin import AdminIdentity
from policies.secrets import hash_secret
from policies.snapshot import PolicySnapshot

if TYPE_CHECKING:
    from gateway_app.counter_store import CounterStores
    from gateway_common.signals import ChangeBus
    from llm_proxy.runtime import LlmRuntime


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def writers(runtime: GatewayRuntime, llm: LlmRuntime | None) -> dict[str, BatchWriter[Any]]:
    """Every background row writer whose failure makes the gateway unready."""
    found: dict[str, BatchWriter[Any]] = {"audit": runtime.audit}
    if llm is not None:
        found["ledger"] = llm.ledger
        found["alerts"] = llm.alerts.writer
    return found


def readiness(
    runtime: GatewayRuntime,
    llm: LlmRuntime | None = None,
    counters: CounterStores | None = None,
    bus: ChangeBus | None = None,
) -> tuple[int, dict[str, Any]]:
    """The status and its detail. The change bus (``bus``: connected, reconnecting) is detail only:
    a replica that cannot hear the others still serves, and polls the database for key changes."""
    upstreams = runtime.hub.status()
    enabled = [u for u in upstreams if u["state"] != "disabled"]
    ready = [u for u in enabled if u["state"] == "ready"]
    rows = writers(runtime, llm)
    stopped = next((name for name, writer in rows.items() if writer.stopped is not None), None)
    failing = next((name for name, writer in rows.items() if writer.last_error is not None), None)
    if runtime.shutdown.is_set:
        status, code = "stopping", 503
    elif stopped is not None:
        status, code = f"{stopped}_writer_stopped", 503
    elif failing is not None:
        status, code = f"{failing}_failing", 503
    elif enabled and not ready:
        status, code = "no_upstream_ready", 503
    elif len(ready) < len(enabled) or (counters is not None and not counters.health.available):
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    body = {
        "status": status,
        "upstreams": upstreams,
        "tools": len(runtime.hub.bindings),
        "catalogue_problems": runtime.hub.catalogue_problems(),
        "sessions": len(runtime.sessions),
        **{name: writer.health() for name, writer in rows.items()},
    }
    if counters is not None:
        body["counters"] = counters.detail()
    if bus is not None:
        body["change_bus"] = bus.health()
    return code, body


def is_loopback_peer(client: tuple[str, int] | None) -> bool:
    """Whether the ASGI peer address is on this host (an unknown peer is not)."""
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class NotAnAdminToken(Exception):
    """The request sent a bearer credential that is not an admin token (a virtual key's included)."""


def admin_identity(request: Request, snapshot: PolicySnapshot) -> AdminIdentity | None:
    """Who the request's admin token names; None when it sends no ``Authorization`` header.

    Raises `NotAnAdminToken` for any other credential: a malformed header, an unknown token, or a
    virtual key's secret (usable or revoked), which never opens an admin door even if an admin token
    somehow shared it."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    guesses = guesses_of(request)
    address = client_address(request)
    if guesses is not None:
        guesses.check(address)  # raises `TooManyWrongTokens` past the address's limit
    token = bearer_token(authorization)
    identity = snapshot.admin.identify(token)
    if identity is None or token is None or snapshot.knows_secret(hash_secret(token)):
        if guesses is not None:
            guesses.wrong(address)
        raise NotAnAdminToken
    return identity


def admin_token_refusal(exc: NotAnAdminToken | TooManyWrongTokens) -> JSONResponse:
    """The answer to a request whose credential `admin_identity` refused (/readyz, /metrics)."""
    if isinstance(exc, TooManyWrongTokens):
        return JSONResponse(
            {
                "error": "too_many_wrong_tokens",
                "message": f"Too many wrong admin tokens from this address: retry in {exc.retry_after} s",
            },
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )
    return JSONResponse(
        {
            "error": "unauthorized",
            "message": "Not an admin token: send 'Authorization: Bearer <admin token>'",
        },
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="mcp-gateway-admin"'},
    )


def _may_see_details(request: Request, runtime: GatewayRuntime) -> bool:
    """True for an admin token (either role) or, if the policy allows, a loopback peer. A token that
    is not an admin token (a virtual key included) raises: a caller who sent one wants to know."""
    if admin_identity(request, runtime.state.current) is not None:
        return True
    return runtime.policy.gateway.health_details == "loopback" and is_loopback_peer(request.client)


async def readyz(request: Request) -> JSONResponse:
    runtime: GatewayRuntime = request.state.runtime
    try:
        detailed = _may_see_details(request, runtime)
    except (NotAnAdminToken, TooManyWrongTokens) as exc:
        return admin_token_refusal(exc)
    code, body = readiness(
        runtime,
        getattr(request.state, "llm", None),
        getattr(request.app.state, "counters", None),
        getattr(request.state, "bus", None),
    )
    return JSONResponse(body if detailed else {"status": body["status"]}, status_code=code)
