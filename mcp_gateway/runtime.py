"""The live resources of the /mcp front door, created in the app's lifespan (never at import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from gateway_common.lifecycle import ShutdownSignal
from gateway_common.policy_state import PolicyState
from mcp_gateway.audit import AuditWriter
from mcp_gateway.hub import UpstreamHub
from mcp_gateway.server.client_requests_modern import ExchangeRegistry
from mcp_gateway.server.sessions import SessionStore
from mcp_gateway.server.subscription_ledger import LocalLedger, SubscriptionLedger
from policies import GatewayPolicy
from policies.ratelimit import RateLimiter


@dataclass
class GatewayRuntime:
    state: PolicyState
    """The current policy snapshot (and its renewal); requests take the one they authenticated with."""
    engine: Engine
    hub: UpstreamHub
    audit: AuditWriter
    sessions: SessionStore
    shutdown: ShutdownSignal
    limiter: RateLimiter | None = None
    """Counts tools/call against ``tool_calls_per_minute`` (the same limiter as the model proxy's)."""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    exchanges: ExchangeRegistry = field(default_factory=ExchangeRegistry)
    """Upstream calls of 2026-07-28 callers waiting for the retry that answers their questions."""
    subscriptions: SubscriptionLedger = field(default_factory=LocalLedger)
    """2025-11-25 sessions' resource subscriptions, where every replica can read them (Redis), so a
    session rebuilt on another replica is subscribed again there."""

    @property
    def policy(self) -> GatewayPolicy:
        """The current policy (the current snapshot's)."""
        return self.state.current.policy
