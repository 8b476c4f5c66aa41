"""The live resources of one gateway process, created in the app's lifespan (never at import)."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from gateway_common.auth import KeyRing
from mcp_gateway.audit import AuditWriter
from mcp_gateway.hub import UpstreamHub
from mcp_gateway.server.sessions import SessionStore
from policies import GatewayPolicy, Principal, ToolGrant
from policies.admin import AdminTokens
from policies.ratelimit import RateLimiter

logger = logging.getLogger("mcp_gateway")


class ShutdownSignal:
    """Set when the process starts to stop, before connections are drained.

    Long-lived streams (the 2025 GET stream, 2026 listen streams) watch it and
    end, so that a graceful stop does not wait for them.
    """

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._set = False

    def trigger(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    @property
    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._event is None:
            self._event = asyncio.Event()
            if self._set:
                self._event.set()
        await self._event.wait()


@dataclass
class GatewayRuntime:
    policy: GatewayPolicy
    engine: Engine
    keys: KeyRing
    hub: UpstreamHub
    audit: AuditWriter
    sessions: SessionStore
    shutdown: ShutdownSignal
    limiter: RateLimiter | None = None
    """Counts tools/call against ``tool_calls_per_minute`` (shared with the model proxy's limits)."""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    admin: AdminTokens = field(init=False)
    """Admin and auditor tokens from the policy file (secrets from this process's environment)."""
    _grants: dict[tuple[str, str | None], ToolGrant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.admin, warnings = AdminTokens.from_settings(
            self.policy.admin, os.environ, key_digests=self.keys.file_key_digests()
        )
        for warning in warnings:
            logger.warning("%s", warning)

    def grant(self, principal: Principal) -> ToolGrant:
        key = (principal.key_id, principal.team)
        grant = self._grants.get(key)
        if grant is None:
            grant = self._grants[key] = self.policy.tool_grant(principal)
        return grant
