"""What a method handler knows about the request it serves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp_gateway.server.sessions import Session
from policies import Principal, ToolGrant

if TYPE_CHECKING:
    from mcp_gateway.runtime import GatewayRuntime

JsonObject = dict[str, Any]
Emit = Callable[[JsonObject], Awaitable[None]]


@dataclass(slots=True)
class RequestContext:
    runtime: GatewayRuntime
    principal: Principal
    grant: ToolGrant
    modern: bool
    """True for a 2026-07-28 request (stateless envelope), False for a 2025-era session."""
    protocol_version: str
    client_info: JsonObject | None
    session: Session | None
    request_id: str | int | None
    emit: Emit | None
    """Sends a notification on this request's own response stream (switches it to SSE)."""
    received_at: float
    """``time.perf_counter()`` when the request arrived."""

    @property
    def client_name(self) -> str | None:
        info = self.client_info or {}
        name = info.get("name")
        return name if isinstance(name, str) else None

    @property
    def client_version(self) -> str | None:
        info = self.client_info or {}
        version = info.get("version")
        return version if isinstance(version, str) else None
