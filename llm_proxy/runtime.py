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

from gateway_common.auth import KeyRing
from llm_proxy.alerts import AlertSink
from llm_proxy.dialects import Dialect
from llm_proxy.errors import NotFound, PermissionDenied
from llm_proxy.ledger import AlertWriter, LedgerWriter, alerts_since, spend_since
from llm_proxy.upstream import ProviderClient, open_providers
from policies import GatewayPolicy, Principal
from policies.bounds import MAX_NAME_CHARS, echo
from policies.budgeting import PERIODS, BudgetBook, BudgetScope, period_bounds, period_label
from policies.counters import Clock, CounterStore, MemoryCounterStore
from policies.pricing import PriceBook
from policies.providers import LlmProxySettings
from policies.ratelimit import RateLimiter
from policies.routing import ModelRouter, Target, is_glob

logger = logging.getLogger("llm_proxy")


@dataclass(frozen=True, slots=True)
class Resolved:
    targets: tuple[Target, ...]
    route: str | None
    budget_scopes: tuple[BudgetScope, ...]
    """The caller's budgets (org, team, key); provider budgets are reserved per target."""


@dataclass
class LlmRuntime:
    policy: GatewayPolicy
    settings: LlmProxySettings
    keys: KeyRing
    providers: dict[str, ProviderClient]
    router: ModelRouter
    prices: PriceBook
    limiter: RateLimiter
    budgets: BudgetBook
    ledger: LedgerWriter
    alerts: AlertSink
    clock: Clock
    warnings: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _id_prefix: str = field(default_factory=lambda: os.urandom(8).hex())
    _resolved: dict[tuple[str, str | None, str, str], Resolved] = field(default_factory=dict)

    def next_request_id(self) -> str:
        """32 hex characters: a random per-process prefix and a counter (no syscall per request)."""
        return f"{self._id_prefix}{next(self._ids):016x}"

    def resolve(self, principal: Principal, model: str, dialect: Dialect) -> Resolved:
        """Route and permission for a key and model (cached: the policy is fixed for the process)."""
        cache_key = (principal.key_id, principal.team, model, dialect.kind)
        found = self._resolved.get(cache_key)
        if found is not None:
            return found
        routed = self.router.route(model, principal)
        if routed is None:
            raise NotFound(f"Model {echo(model)} is not served by this gateway (no route matches it)")
        targets = tuple(t for t in routed.targets if t.kind == dialect.kind)
        if not targets:
            other = "/v1/messages" if dialect.openai else "/v1/chat/completions"
            raise NotFound(
                f"Model {echo(model)} is routed to a provider that does not speak this API; use {other}"
            )
        if not self.router.allows(principal, model, targets[0].model):
            raise PermissionDenied(f"Key {principal.key_id!r} may not use model {echo(model)}")
        found = Resolved(targets, routed.route, self.budgets.caller_scopes(principal))
        if len(model) <= MAX_NAME_CHARS:  # a stream of huge distinct names must not fill memory
            if len(self._resolved) >= 10_000:
                self._resolved.clear()
            self._resolved[cache_key] = found
        return found

    @property
    def provider_secrets(self) -> tuple[bytes, ...]:
        return tuple(s.encode() for p in self.providers.values() for s in p.secrets)

    def redact(self, body: bytes) -> bytes:
        """Remove provider keys from an upstream error body before it is relayed (defence in depth)."""
        for secret in self.provider_secrets:
            if secret and secret in body:
                body = body.replace(secret, b"[redacted]")
        return body

    async def aclose(self) -> None:
        """Close everything; a step that fails is logged and the others still run."""
        steps = [("the budget alerts", self.alerts.aclose), ("the ledger", self.ledger.aclose)]
        steps += [(f"provider {name!r}", provider.aclose) for name, provider in self.providers.items()]
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
    policy: GatewayPolicy,
    engine: Engine,
    keys: KeyRing,
    *,
    clock: Clock | None = None,
    store: CounterStore | None = None,
) -> LlmRuntime:
    clock = clock or time.time
    store = store or MemoryCounterStore()
    settings = policy.llm_proxy
    providers, warnings = open_providers(policy.providers)
    prices = PriceBook(policy.pricing, clock)
    warnings += await asyncio.to_thread(unpriced_models, policy, prices, providers)
    ledger = LedgerWriter(engine, settings)
    alerts = AlertSink(
        AlertWriter(engine, settings), policy.budgets.alert_webhook, settings.alert_webhook_timeout_seconds
    )
    budgets = BudgetBook(policy, store, clock)
    runtime = LlmRuntime(
        policy=policy,
        settings=settings,
        keys=keys,
        providers=providers,
        router=ModelRouter(policy),
        prices=prices,
        limiter=RateLimiter(policy, store, clock),
        budgets=budgets,
        ledger=ledger,
        alerts=alerts,
        clock=clock,
        warnings=warnings,
    )
    try:
        await ledger.start()
        await alerts.start()
        if budgets.enabled:
            await restore_spend(runtime, engine)
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
            len(budgets.all_scopes()),
        )
    return runtime


async def restore_spend(runtime: LlmRuntime, engine: Engine) -> None:
    """Seed the current periods' budget counters and fired alerts from the database."""
    now = runtime.clock()
    starts = {period: period_bounds(period, now)[0] for period in PERIODS}
    for period, since in starts.items():
        rows = await asyncio.to_thread(spend_since, engine, since)
        await runtime.budgets.restore(period, rows)
    current: dict[str, str] = {period: period_label(period, start) for period, start in starts.items()}
    earliest = min(starts.values())
    for kind, budget, period_name, label in await asyncio.to_thread(alerts_since, engine, earliest):
        if current.get(period_name) == label:
            await runtime.budgets.restore_alert(kind, budget, period_name, label)
