"""The model proxy's live resources, made in the app's lifespan and closed with it.

`start_llm_runtime` opens a connection pool per provider, starts the ledger and
alert writers (replaying any fallback file first), rebuilds the spend of the
current budget periods from the ledger, and logs what an admin must know
(providers without keys, models without prices).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine

from gateway_common.policy_state import PolicyState
from gateway_common.writers.process import WriterProcess
from llm_proxy.alerts import AlertSink
from llm_proxy.dialects import Dialect
from llm_proxy.errors import NotFound, PermissionDenied
from llm_proxy.ledger import AlertWriter, LedgerWriter, alerts_since, spend_since
from llm_proxy.upstream import ProviderClient, open_provider, open_providers
from policies import GatewayPolicy, Principal
from policies.bounds import echo
from policies.budgeting import PERIODS, BudgetBook, BudgetScopes, period_bounds, period_label
from policies.counters import Clock
from policies.pricing import PriceBook
from policies.providers import LlmProxySettings, ProviderConfig
from policies.ratelimit import RateLimiter
from policies.routing import ModelRouter, is_glob
from policies.snapshot import ModelRoute, PolicySnapshot

logger = logging.getLogger("llm_proxy")

RETIRE_GRACE_SECONDS = 5.0
"""A replaced or removed provider's client stays open at least this long after a reload (a request
that chose it just before the swap still uses it), then until its last response is read."""
RETIRE_LIMIT_SECONDS = 3600.0
"""...and at most this long: a stream still running then is cut."""


@dataclass
class ProviderChanges:
    """What a reload does to the providers: new clients for added and changed ones."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    clients: dict[str, ProviderClient] = field(default_factory=dict, repr=False)
    """The providers of the new policy: unchanged ones keep their client (and its connections)."""
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[str]]:
        return {name: getattr(self, name) for name in ("added", "removed", "changed") if getattr(self, name)}


@dataclass
class LlmRuntime:
    """The model proxy's own resources; policy decisions come from the request's snapshot (`state`)."""

    state: PolicyState
    settings: LlmProxySettings
    providers: dict[str, ProviderClient]
    limiter: RateLimiter
    """Shared with the /mcp front door (tools/call counts against tool_calls_per_minute)."""
    budgets: BudgetBook
    ledger: LedgerWriter
    alerts: AlertSink
    clock: Clock
    warnings: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _id_prefix: str = field(default_factory=lambda: os.urandom(8).hex())

    _live: set[str] = field(default_factory=set)
    """Provider names of the policy in force; `providers` may also hold removed ones still retiring."""
    _retiring: dict[ProviderClient, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._live = set(self.providers)

    def next_request_id(self) -> str:
        """32 hex characters: a random per-process prefix and a counter (no syscall per request)."""
        return f"{self._id_prefix}{next(self._ids):016x}"

    def route(
        self, snapshot: PolicySnapshot, principal: Principal, model: str, dialect: Dialect
    ) -> ModelRoute:
        """Where the caller's model goes under ``snapshot``; the proxy's error when it may not."""
        decision = snapshot.route_model(principal, model, dialect.kind)
        if isinstance(decision, ModelRoute):
            return decision
        if decision.reason == "unrouted":
            raise NotFound(f"Model {echo(model)} is not served by this gateway (no route matches it)")
        if decision.reason == "other_api":
            other = "/v1/messages" if dialect.openai else "/v1/chat/completions"
            raise NotFound(
                f"Model {echo(model)} is routed to a provider that does not speak this API; use {other}"
            )
        raise PermissionDenied(f"Key {principal.key_id!r} may not use model {echo(model)}")

    async def budget_status(self) -> list[dict[str, object]]:
        """Every budget of the current policy: spent, reserved, limit, reset time."""
        return await self.budgets.status(self.state.current.budget_scopes)

    @property
    def provider_secrets(self) -> tuple[bytes, ...]:
        return tuple(s.encode() for p in self.providers.values() for s in p.secrets)

    def redact(self, body: bytes) -> bytes:
        """Remove provider keys from an upstream error body before it is relayed (defence in depth)."""
        for secret in self.provider_secrets:
            if secret and secret in body:
                body = body.replace(secret, b"[redacted]")
        return body

    # -- reloads -------------------------------------------------------------------------

    def prepare_providers(self, configs: list[ProviderConfig]) -> ProviderChanges:
        """Clients for the providers of a new policy: new ones for added and changed providers (their
        pools connect on first use), the current ones for the rest. Nothing live changes yet."""
        changes = ProviderChanges()
        try:
            for config in configs:
                current = self.providers.get(config.name) if config.name in self._live else None
                if current is not None and current.config == config:
                    changes.clients[config.name] = current
                    continue
                changes.clients[config.name], warnings = open_provider(config)
                changes.warnings += warnings
                (changes.added if current is None else changes.changed).append(config.name)
        except BaseException:
            self.discard_providers(changes)
            raise
        changes.removed = sorted(self._live - set(changes.clients))
        return changes

    def discard_providers(self, changes: ProviderChanges) -> None:
        """Close the clients `prepare_providers` opened for a reload that is not applied."""
        for name in (*changes.added, *changes.changed):
            client = changes.clients.get(name)
            if client is not None:
                self._retire(client, grace=0.0)

    def adopt_providers(self, changes: ProviderChanges, settings: LlmProxySettings) -> None:
        """Make the new clients the live ones, at once (no await). A removed provider stays reachable
        by name for requests routed under the previous snapshot until its client is retired."""
        old = self.providers
        providers = dict(changes.clients)
        for name, client in old.items():
            if name not in providers and (name in changes.removed or name not in self._live):
                providers[name] = client  # removed (now, or by an earlier reload): retiring
        for name in (*changes.changed, *changes.removed):
            self._retire(old[name], grace=RETIRE_GRACE_SECONDS)
        self.providers = providers
        self._live = set(changes.clients)
        self.settings = settings

    def _retire(self, client: ProviderClient, grace: float) -> None:
        async def retire() -> None:
            try:
                await asyncio.sleep(grace)
                deadline = time.monotonic() + RETIRE_LIMIT_SECONDS
                while client.pool.in_use and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
                await client.aclose()
            finally:
                self._retiring.pop(client, None)
                if self.providers.get(client.name) is client and client.name not in self._live:
                    self.providers = {k: v for k, v in self.providers.items() if v is not client}

        self._retiring[client] = asyncio.create_task(retire(), name=f"retire-provider-{client.name}")

    async def aclose(self) -> None:
        """Close everything; a step that fails is logged and the others still run."""
        for task in self._retiring.values():
            task.cancel()
        retiring = list(self._retiring)
        steps = [("the budget alerts", self.alerts.aclose), ("the ledger", self.ledger.aclose)]
        steps += [(f"provider {name!r}", provider.aclose) for name, provider in self.providers.items()]
        steps += [
            (f"replaced provider {p.name!r}", p.aclose) for p in retiring if p not in self.providers.values()
        ]
        for what, close in steps:
            try:
                await close()
            except Exception:
                logger.exception("model proxy: could not close %s", what)
        logger.info("model ledger flushed: %d rows written", self.ledger.written)


def unpriced_models(
    policy: GatewayPolicy, prices: PriceBook, providers: dict[str, ProviderClient]
) -> list[str]:
    """Start-up warnings for every model the policy names exactly that has no known price."""
    router = ModelRouter(policy)
    names: set[str] = set()
    for route in policy.routes:
        for fallback in route.targets():
            if fallback.model is not None:
                names.add(fallback.model)
        if not is_glob(route.match) and route.model is None:
            names.add(route.match)
    for provider in policy.providers:
        names.update(provider.models)
    for key in policy.virtual_keys:
        names.update(m for m in key.allowed_models or () if not is_glob(m))
    choice = "refused (pricing.unknown_model: block)" if prices.blocks_unknown else "counted as $0"
    warnings = []
    for name in sorted(names):
        routed = router.route(name)
        targets = routed.targets if routed is not None else ()
        for target in targets or ():
            client = providers.get(target.provider)
            hint = client.price_hint if client is not None else (None, None)
            if prices.rates(target.model, *hint) is None:
                warnings.append(
                    f"model {target.model!r} (provider {target.provider!r}) has no known price: requests are "
                    f"{choice}; add it under pricing.models to set one"
                )
    return sorted(set(warnings))


async def start_llm_runtime(
    state: PolicyState,
    engine: Engine,
    *,
    limiter: RateLimiter,
    budgets: BudgetBook,
    clock: Clock,
    writer_process: WriterProcess | None = None,
) -> LlmRuntime:
    """Open the providers, start the writers (storing their rows in ``writer_process``, if given)
    and rebuild the current periods' spend from the ledger."""
    policy = state.policy
    settings = policy.llm_proxy
    providers, warnings = open_providers(policy.providers)
    warnings += await asyncio.to_thread(unpriced_models, policy, state.current.prices, providers)
    ledger = LedgerWriter(engine, settings, process=writer_process)
    alerts = AlertSink(
        AlertWriter(engine, settings, process=writer_process),
        policy.budgets.alert_webhook,
        settings.alert_webhook_timeout_seconds,
    )
    runtime = LlmRuntime(
        state=state,
        settings=settings,
        providers=providers,
        limiter=limiter,
        budgets=budgets,
        ledger=ledger,
        alerts=alerts,
        clock=clock,
        warnings=warnings,
    )
    scopes = state.current.budget_scopes
    try:
        await ledger.start()
        await alerts.start()
        if scopes.enabled:
            await restore_spend(runtime, engine, scopes)
    except BaseException:
        await runtime.aclose()
        raise
    for warning in warnings:
        logger.warning("%s", warning)
    if providers:
        logger.info(
            "model proxy: %d providers, %d routes, %d budgets",
            len(providers),
            len(policy.routes),
            len(scopes.all_scopes()),
        )
    return runtime


async def restore_spend(runtime: LlmRuntime, engine: Engine, scopes: BudgetScopes) -> None:
    """Seed the current periods' budget counters and fired alerts from the database."""
    now = runtime.clock()
    starts = {period: period_bounds(period, now)[0] for period in PERIODS}
    for period, since in starts.items():
        rows = await asyncio.to_thread(spend_since, engine, since)
        await runtime.budgets.restore(period, rows, scopes)
    current: dict[str, str] = {period: period_label(period, start) for period, start in starts.items()}
    earliest = min(starts.values())
    for kind, budget, period_name, label in await asyncio.to_thread(alerts_since, engine, earliest):
        if current.get(period_name) == label:
            await runtime.budgets.restore_alert(kind, budget, period_name, label)
