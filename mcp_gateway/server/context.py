"""What a method handler knows about the request it serves, built in one place (`Incoming.context`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Send

from mcp_gateway.server.handshake import ClientCapability
from mcp_gateway.server.sessions import Session
from policies import Grant, Principal
from policies.snapshot import PolicySnapshot

if TYPE_CHECKING:
    from mcp_gateway.runtime import GatewayRuntime

JsonObject = dict[str, Any]
Emit = Callable[[JsonObject], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class Incoming:
    """One authenticated HTTP request to /mcp, before its era is known."""

    runtime: GatewayRuntime
    snapshot: PolicySnapshot
    """The policy snapshot that recognised the caller: every decision of this request comes from it."""
    principal: Principal
    headers: dict[str, str]
    """The headers the endpoint reads (`wire.read_headers`)."""
    receive: Receive
    send: Send
    received_at: float
    """``time.perf_counter()`` when the request arrived."""
    sse_allowed: bool
    """The client accepts ``text/event-stream`` (a response may switch to SSE)."""

    def context(
        self,
        request_id: str | int | None,
        *,
        modern: bool,
        protocol_version: str,
        client_name: str | None,
        client_version: str | None,
        session: Session | None = None,
        emit: Emit | None = None,
        capabilities: ClientCapability = ClientCapability.NONE,
        log_level: str | None = None,
    ) -> RequestContext:
        """The context of one JSON-RPC request: the only place one is made."""
        return RequestContext(
            runtime=self.runtime,
            snapshot=self.snapshot,
            principal=self.principal,
            grant=self.snapshot.grant(self.principal),
            modern=modern,
            protocol_version=protocol_version,
            client_name=client_name,
            client_version=client_version,
            session=session,
            request_id=request_id,
            emit=emit,
            received_at=self.received_at,
            capabilities=capabilities,
            log_level=log_level,
        )


@dataclass(slots=True, kw_only=True)
class RequestContext:
    runtime: GatewayRuntime
    snapshot: PolicySnapshot
    principal: Principal
    grant: Grant
    modern: bool
    """True for a 2026-07-28 request (stateless envelope), False for a 2025-era session."""
    protocol_version: str
    client_name: str | None
    """From the client's ``clientInfo``, clipped (`handshake.client_string`)."""
    client_version: str | None
    session: Session | None
    request_id: str | int | None
    emit: Emit | None
    """Sends a notification on this request's own response stream (switches it to SSE)."""
    received_at: float
    """``time.perf_counter()`` when the request arrived."""
    capabilities: ClientCapability = ClientCapability.NONE
    """What the client declared it can be asked (elicitation, sampling, roots)."""
    log_level: str | None = None
    """The least severe log message the caller wants (None: none)."""
    client_requests: int = 0
    """Requests put to the client while serving this request (its audit row counts them)."""
