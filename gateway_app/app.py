"""`create_app(settings)`: the one factory. Everything with a lifetime is made in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway_app.admin_actions import AdminActions
from gateway_app.admin_api import admin_routes
from gateway_app.admin_guesses import AdminGuesses
from gateway_app.counter_store import CounterStores, build_counter_stores
from gateway_app.database import prepare_database
from gateway_app.guard import HostGuard, refusal_response
from gateway_app.health import healthz, readyz
from gateway_app.metrics import GatewayMetrics, metrics_endpoint
from gateway_app.peers import Peers
from gateway_app.policy_watch import watch_policy_file
from gateway_app.reload import PolicySource, Reloader, ReloadRequests
from gateway_app.retention import RetentionTask
from gateway_app.settings import Settings
from gateway_app.ui import Dashboard
from gateway_common.db import make_engine, sqlite_file
from gateway_common.lifecycle import ShutdownSignal
from gateway_common.policy_state import PolicyState
from gateway_common.signals import ChangeBus, open_bus
from gateway_common.writers.process import WriterProcess
from llm_proxy.endpoints import llm_fast_paths, llm_routes
from llm_proxy.runtime import start_llm_runtime
from mcp_gateway.audit import AuditWriter
from mcp_gateway.hub import UpstreamHub
from mcp_gateway.runtime import GatewayRuntime
from mcp_gateway.server import subscription_ledger
from mcp_gateway.server.endpoint import McpEndpoint
from mcp_gateway.server.session_ids import SessionIds
from mcp_gateway.server.sessions import SessionStore
from mcp_gateway.server.subscription_ledger import (
    LocalLedger,
    RedisLedger,
    SubscriptionLedger,
    resync_periodically,
)
from mcp_gateway.upstream.base import UpstreamConnection
from mcp_gateway.upstream.supervisor import make_connection
from policies.budgeting import BudgetBook
from policies.counters import Clock, CounterStore
from policies.gateway_settings import GatewaySettings
from policies.ratelimit import RateLimiter

logger = logging.getLogger("mcp_gateway")


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"error": "not_found", "message": f"No route for {request.url.path}"}, status_code=404
    )


async def _no_oauth(request: Request) -> JSONResponse:
    """Clients that try OAuth discovery after a 401 learn what to do instead."""
    return JSONResponse(
        {
            "error": "oauth_not_supported",
            "message": "This gateway uses virtual keys, not OAuth: send the header "
            "'Authorization: Bearer <virtual key>' (claude mcp add ... --header)",
        },
        status_code=404,
    )


_OAUTH_PATHS = (
    "/.well-known/oauth-protected-resource{rest:path}",
    "/.well-known/oauth-authorization-server{rest:path}",
    "/.well-known/openid-configuration{rest:path}",
    "/register",
    "/authorize",
    "/token",
)


class GatewayApp(Starlette):
    """Starlette, with the Host/Origin guard in front of every HTTP request and the hottest POST
    endpoints dispatched before the middleware stack.

    Those endpoints answer every error themselves, so Starlette's error middleware
    has nothing to add there, while wrapping ``send`` costs a call per message:
    per event of a relayed model stream. Every other request goes through Starlette.
    The guard runs first for all of them (websocket and lifespan scopes are not HTTP).
    """

    def __init__(self, *args: Any, fast_paths: dict[str, ASGIApp], guard: HostGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast_paths = fast_paths
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self.guard.refusal(scope["headers"])
            if problem is not None:
                status, headers, body = refusal_response(scope["path"], problem)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            if scope["method"] == "POST":
                fast = self.fast_paths.get(scope["path"])
                if fast is not None:
                    scope["app"] = self
                    await fast(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


async def _sweep_sessions(runtime: GatewayRuntime) -> None:
    while True:
        await asyncio.sleep(60)
        evicted = runtime.sessions.evict_idle()
        if evicted:
            logger.info("closed %d idle sessions", evicted)


WRITER_MODULES = ("mcp_gateway.audit.writer", "llm_proxy.ledger")
"""What the writer process needs imported: the tables and preparers of the audit, ledger and alert writers."""


async def _start_writer_process(gateway: GatewaySettings) -> WriterProcess | None:
    """The writer process of ``gateway.row_writer: process`` (None: the writers use threads)."""
    url = gateway.database_url
    if gateway.row_writer != "process":
        return None
    if url.startswith("sqlite") and sqlite_file(url) is None:
        logger.info("audit and ledger rows are written from a thread: another process cannot open %s", url)
        return None
    process = WriterProcess(url, preload=WRITER_MODULES)
    await process.start()
    return process


async def _step(what: str, action: Callable[[], Awaitable[object] | object]) -> None:
    """One step of the shutdown: a failure is logged and the next step still runs."""
    try:
        outcome = action()
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        logger.exception("shutdown: could not %s", what)


def _subscription_ledger(counters: CounterStores, shared_sessions: bool) -> SubscriptionLedger:
    """Where 2025 sessions' resource subscriptions are recorded: the counters' Redis when sessions are
    shared across replicas (a signed id rebuilt elsewhere is subscribed again there), else nowhere."""
    if counters.redis is None or not shared_sessions:
        return LocalLedger()
    settings = counters.settings
    return RedisLedger(counters.redis.client, settings.key_prefix, settings.timeout_ms / 1000)


def create_app(
    settings: Settings,
    *,
    connection_factory: Callable[[Any], UpstreamConnection] = make_connection,
    clock: Clock | None = None,
    counter_store: CounterStore | None = None,
    policy_source: PolicySource | None = None,
    change_bus: ChangeBus | None = None,
) -> Starlette:
    """``clock`` and ``counter_store`` feed the model proxy's rate limits and budgets (tests inject a
    clock; several replicas would share a store). ``policy_source`` is the file reloads read (default:
    the file ``settings`` came from, if any, without command-line overrides). ``change_bus`` carries
    changes between replicas (default: the one ``counters`` implies, `gateway_common.signals.open_bus`)."""
    policy = settings.policy
    shutdown = ShutdownSignal()
    now = clock or time.time
    metrics = GatewayMetrics(policy.gateway.metrics, policy) if policy.gateway.metrics.enabled else None
    if policy_source is None and settings.source is not None and Path(settings.source).is_file():
        policy_source = PolicySource(Path(settings.source))
    reloads = ReloadRequests()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        for warning in settings.warnings:
            logger.warning("%s", warning)
        engine = await asyncio.to_thread(make_engine, policy.gateway.database_url)
        await asyncio.to_thread(prepare_database, engine, policy.gateway.database_migrations)
        state = PolicyState(policy, engine, clock=now)
        writer_process = await _start_writer_process(policy.gateway)
        # Redaction and content rules follow the current policy, read as each batch is stored.
        audit = AuditWriter(
            engine, policy.gateway.audit, policy=lambda: state.current.policy, process=writer_process
        )
        await audit.start()
        await state.refresh_keys()
        counters = build_counter_stores(policy.counters, counter_store)  # memory, or Redis (guarded)
        app.state.counters = counters  # /readyz and /metrics show its state
        await counters.check_at_start()
        # One store for both front doors (tools/call counts tool_calls_per_minute); each refuses in its
        # own words while a shared store is unreachable.
        limiter = RateLimiter(counters.model_api, now)
        budgets = BudgetBook(counters.model_api, now)
        llm = await start_llm_runtime(
            state, engine, limiter=limiter, budgets=budgets, clock=now, writer_process=writer_process
        )
        hub = UpstreamHub(policy, connection_factory)
        session_ids, ids_warning = SessionIds.from_environment(policy.gateway.session_secret_env, os.environ)
        if ids_warning is not None and session_ids.shared:  # an unset variable is among settings.warnings
            logger.warning("%s", ids_warning)
        sessions = SessionStore(
            idle_timeout=policy.gateway.session_idle_seconds,
            max_sessions=policy.gateway.max_sessions,
            max_per_key=policy.gateway.max_sessions_per_key,
            ids=session_ids,
            key_ended_after=state.ended_after,
        )
        state.on_keys_ended(sessions.close_keys)  # a revoked key's sessions (and their GET streams) end
        runtime = GatewayRuntime(
            state,
            engine,
            hub,
            audit,
            sessions,
            shutdown,
            RateLimiter(counters.tool_calls, now),
            subscriptions=_subscription_ledger(counters, session_ids.shared),
        )
        hub.start()
        wait = policy.mcp.startup_wait_seconds
        if wait and hub.supervisors and not await hub.wait_ready(wait):
            late = [s.name for s in hub.supervisors.values() if s.state != "ready"]
            logger.warning(
                "accepting requests before these upstreams answered (%g s): %s", wait, ", ".join(late)
            )
        sweeper = asyncio.create_task(_sweep_sessions(runtime), name="session-sweeper")
        resyncer = None
        if runtime.subscriptions.shared:  # a change the bus lost is read at the session's next request
            resyncer = asyncio.create_task(
                resync_periodically(sessions.resync_subscriptions, subscription_ledger.RESYNC_SECONDS),
                name="subscription-resync",
            )
        key_watcher = asyncio.create_task(state.watch_keys(), name="key-watcher")
        retention = RetentionTask(engine, lambda: state.current.policy, now)
        pruner = asyncio.create_task(retention.run(), name="retention")
        if metrics is not None:
            metrics.attach(runtime, llm, retention, counters.health)

        def apply_gateway_settings(gateway: GatewaySettings) -> None:
            if isinstance(app, GatewayApp):  # allowed hosts and origins apply to the next request
                app.guard = HostGuard(gateway)

        reloader = Reloader(
            source=policy_source,
            state=state,
            hub=hub,
            llm=llm,
            engine=engine,
            apply_gateway_settings=apply_gateway_settings,
            clock=now,
        )
        bus = change_bus or open_bus(policy.counters)
        peers = Peers(bus, state, reloader, sessions)
        peers.attach()
        await bus.start()  # a remote bus connects in the background (and resyncs when it does)
        reloads.bind(reloader)
        watcher = None
        if policy_source is not None:
            watcher = asyncio.create_task(
                watch_policy_file(
                    reloader, policy_source.path, lambda: state.current.policy.gateway.watch_policy_file
                ),
                name="policy-file-watcher",
            )
        app.state.runtime = runtime  # for embedding code and tests; requests use the lifespan state
        app.state.llm = llm
        app.state.reloader = reloader
        admin_actions = AdminActions(engine)  # one recorder for the admin API and the dashboard
        app.state.admin_actions = admin_actions
        # Everything loaded so far lives as long as the process: keep it out of the cyclic GC, whose
        # full passes over it (about 150k objects, ~0.1 s) otherwise show up as latency spikes.
        gc.freeze()
        try:
            yield {
                "runtime": runtime,
                "llm": llm,
                "policy_state": state,
                "reloader": reloader,
                "admin_actions": admin_actions,
                "bus": bus,
                "admin_guesses": AdminGuesses(),
            }
        finally:
            app.state.runtime = app.state.llm = app.state.reloader = None
            app.state.admin_actions = app.state.counters = None
            gc.unfreeze()
            shutdown.trigger()
            sweeper.cancel()
            if resyncer is not None:
                resyncer.cancel()
            key_watcher.cancel()
            pruner.cancel()
            if watcher is not None:
                watcher.cancel()
            await _step("cancel a policy reload under way", reloads.aclose)
            await _step("close the change bus", bus.aclose)
            await _step("stop publishing changes", peers.aclose)
            reloader.close()
            # Every step runs even if an earlier one failed: the rows in memory must reach the database.
            await _step("close sessions", sessions.close_all)
            await _step("stop the upstream servers", hub.stop)
            await _step("flush the audit log", audit.aclose)
            logger.info("audit log flushed: %d records written", audit.written)
            await _step("flush the model ledger", llm.ledger.aclose)
            await _step("close the model proxy", llm.aclose)  # alerts and provider pools, each guarded
            if writer_process is not None:
                await _step("stop the writer process", writer_process.close)
            await _step("close the counter store", counters.aclose)
            if metrics is not None:
                metrics.detach()
            await _step("close the database", lambda: asyncio.to_thread(engine.dispose))

    mcp_endpoint = McpEndpoint()
    dashboard = Dashboard(now)
    app = GatewayApp(
        fast_paths={**llm_fast_paths(), "/mcp": mcp_endpoint},
        routes=[
            *llm_routes(),  # first: model requests are the hottest paths (routes are matched in order)
            Route("/mcp", mcp_endpoint),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *admin_routes(),  # /admin/... and GET /v1/quota
            *([Route("/metrics", metrics_endpoint, methods=["GET"])] if metrics is not None else []),
            *(Route(path, _no_oauth, methods=["GET", "POST"]) for path in _OAUTH_PATHS),
            *dashboard.routes(),  # /ui
        ],
        lifespan=lifespan,
        exception_handlers={404: _not_found},
        guard=HostGuard(policy.gateway),
    )
    app.state.shutdown = shutdown
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.counters = None
    app.state.reloads = reloads  # SIGHUP (`cli.GatewayServer`) asks here
    app.state.dashboard = dashboard
    return app
