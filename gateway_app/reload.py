"""Reloading the policy file while the gateway runs (SIGHUP, the admin API, the file watcher).

A reload reads and validates the file exactly as ``check`` and ``serve`` do; a file
with errors is refused with them (file, line, path) and nothing changes. A valid file
is compared with the policy in force (`policies.changes`), then applied in two steps:

1. Preparation, while requests go on under the old policy: clients for added or
   changed model providers, supervisors for added or changed upstream servers (waited
   for up to ``mcp.startup_wait_seconds``, so their tools are there when the new
   permissions are), budget counters for new budgets (seeded from the ledger).
2. The swap, with no await in it: the new snapshot (keys, permissions, limits,
   budgets, routes, admin tokens), the servers (unchanged ones keep their connection,
   sessions and tools), the providers, the Host/Origin guard. The next request takes
   all of it; requests already running finish under the snapshot they started with,
   and replaced servers and providers are closed once their calls in flight are done.

Settings a running process cannot change (`policies.changes.RESTART_ONLY`: the listen
address, the database, the serving limits, the row writers) keep their old values and
the reload says so. Every attempt is logged in one line and recorded (`ReloadLog`).
Clients whose catalogue changed are told by their streams (`mcp_gateway.server.streams`).

With several replicas, a reload through one (SIGHUP, the admin API) is announced on the
change bus with the SHA-256 of the file it read (`on_reloaded`, wired by `gateway_app.peers`);
every other replica then reloads *its own* file (trigger ``peer``) with that digest expected.
Each replica reads its own path, so replicas must share the policy file's content: one whose
file differs logs it and records the attempt as refused, keeping its policy in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from gateway_app.reload_log import ReloadLog, ReloadOutcome, ReloadRecord, Trigger, bounded, now
from gateway_app.reload_worker import ReloadWorker
from gateway_app.settings import Settings, load_policy_source
from gateway_common.policy_state import PolicyState, PreparedSnapshot
from llm_proxy.runtime import LlmRuntime, ProviderChanges, restore_spend, unpriced_models
from mcp_gateway.hub import UpstreamHub
from policies import ConfigError, ConfigIssue, GatewayPolicy
from policies.changes import PolicyChanges, describe, diff_policies, keep_restart_settings, summarise
from policies.counters import Clock
from policies.gateway_settings import GatewaySettings
from policies.pricing import PriceBook

logger = logging.getLogger("gateway_app.reload")


@dataclass(frozen=True)
class PolicySource:
    """The file a gateway was started from, and the command-line overrides (``--host``, ``--port``,
    ``--database-url``) that a reload applies again, as ``serve`` did."""

    path: Path
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def read(self) -> tuple[Settings, str]:
        """The validated settings and the SHA-256 of the bytes they came from; raises `ConfigError`."""
        data = self.read_bytes()
        return self.parse(data), digest(data)

    def read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                [ConfigIssue("", f"cannot read file: {exc.strerror or exc}")], str(self.path)
            ) from None

    def parse(self, data: bytes) -> Settings:
        """Validate the file's bytes exactly as ``serve`` and ``check`` do (`load_policy_source`)."""
        where = str(self.path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError([ConfigIssue("", f"not UTF-8 text ({exc.reason})")], where) from None
        return Settings.from_loaded(load_policy_source(text, where), **self.overrides)

    def current_digest(self) -> str | None:
        try:
            return digest(self.path.read_bytes())
        except OSError:
            return None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class _Read:
    digest: str | None
    """Of the bytes read (None: the file could not be read)."""
    error: ConfigError | None = None
    policy: GatewayPolicy | None = None
    """The file's policy with the running values of the restart-only settings."""
    changes: PolicyChanges = field(default_factory=PolicyChanges)
    kept: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    prepared: PreparedSnapshot | None = None


def _read_and_compare(source: PolicySource, state: PolicyState, old: GatewayPolicy) -> _Read:
    """Read, validate, compare and build the new snapshot: the costly part of a reload (tens of
    milliseconds for a thousand keys), in a worker thread while requests go on."""
    try:
        data = source.read_bytes()
    except ConfigError as exc:
        return _Read(None, exc)
    try:
        settings = source.parse(data)
    except ConfigError as exc:
        return _Read(digest(data), exc)
    changes = diff_policies(old, settings.policy)
    policy, kept = keep_restart_settings(old, settings.policy)
    prepared = state.prepare_policy(policy) if policy != old else None
    return _Read(digest(data), None, policy, changes, kept, list(settings.warnings), prepared)


class Reloader:
    """Applies a new version of the policy file to the running gateway; one attempt at a time."""

    def __init__(
        self,
        *,
        source: PolicySource | None,
        state: PolicyState,
        hub: UpstreamHub,
        llm: LlmRuntime,
        engine: Engine | None,
        apply_gateway_settings: Callable[[GatewaySettings], None],
        clock: Clock,
        log: ReloadLog | None = None,
    ) -> None:
        self.source = source
        self.state = state
        self.hub = hub
        self.llm = llm
        self.engine = engine
        self.apply_gateway_settings = apply_gateway_settings
        self.clock = clock
        self._worker = ReloadWorker()
        self.log = log or ReloadLog(engine, self._worker)
        self.last_digest: str | None = source.current_digest() if source is not None else None
        """The file content last read (applied or refused): the watcher reloads only when it differs."""
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[ReloadRecord, str | None], Awaitable[None]]] = []

    def on_reloaded(self, listener: Callable[[ReloadRecord, str | None], Awaitable[None]]) -> None:
        """Await ``listener(record, digest of the bytes read)`` after every attempt (the change bus)."""
        self._listeners.append(listener)

    def close(self) -> None:
        self._worker.close()

    def history(self) -> list[ReloadRecord]:
        """The last attempts of this process, newest first (the admin API's "last reloads")."""
        return self.log.recent()

    async def reload(
        self, trigger: Trigger, *, expected_digest: str | None = None, origin: str | None = None
    ) -> ReloadRecord:
        """Read the file and apply it; the record says what happened (it never raises for a bad file).
        With ``expected_digest`` (a peer's reload), a file whose bytes differ is refused."""
        async with self._lock:
            attempt = _Attempt(trigger, self.source)
            attempt.expected_digest, attempt.origin = expected_digest, origin
            try:
                record = await self._reload(attempt)
            except asyncio.CancelledError:
                logger.warning("policy reload (%s) cancelled: the gateway is stopping", trigger)
                raise
            except Exception as exc:
                logger.exception("policy reload (%s) failed; the policy in force is unchanged", trigger)
                record = attempt.record(
                    ReloadOutcome.FAILED, self.state.current.version, errors=[f"{type(exc).__name__}: {exc}"]
                )
            await self.log.add(record)
        digest = self.last_digest
        for listener in self._listeners:
            try:
                await listener(record, digest)
            except Exception:
                logger.exception("a listener failed after the policy reload %s", record.id)
        return record

    async def _reload(self, attempt: _Attempt) -> ReloadRecord:
        version = self.state.current.version
        if self.source is None:
            message = "this gateway was not started from a policy file (nothing to reload)"
            return self._refused(attempt, [message])
        old = self.state.current.policy
        source, state = self.source, self.state
        read = await self._worker.run(lambda: _read_and_compare(source, state, old))
        self.last_digest = read.digest
        if attempt.expected_digest is not None and read.digest != attempt.expected_digest:
            return self._refused(attempt, [_differs(self.source.path, read.digest, attempt)])
        if read.error is not None:
            return self._refused(attempt, [issue.render(read.error.source) for issue in read.error.issues])
        policy, changes = read.policy, read.changes
        warnings = [*read.warnings, *(_restart_warning(path) for path in read.kept)]
        if policy is None or read.prepared is None:
            record = attempt.record(
                ReloadOutcome.UNCHANGED, version, changes=summarise(changes), warnings=warnings
            )
            logger.info(
                "policy reload (%s): nothing to apply, snapshot %d stays in force%s",
                attempt.trigger,
                version,
                _tail(record.warnings),
            )
            return record
        return await self._apply(attempt, old, read.prepared, changes, warnings)

    async def _apply(
        self,
        attempt: _Attempt,
        old: GatewayPolicy,
        prepared: PreparedSnapshot,
        changes: PolicyChanges,
        warnings: list[str],
    ) -> ReloadRecord:
        policy = prepared.snapshot.policy
        providers: ProviderChanges | None = None
        try:
            providers = self.llm.prepare_providers(policy.providers)
            warnings += providers.warnings
            starting = self.hub.prepare(policy)
            scopes = prepared.snapshot.budget_scopes
            known = {scope.ident for scope in self.state.current.budget_scopes.all_scopes()}
            if self.engine is not None and any(s.ident not in known for s in scopes.all_scopes()):
                await self.llm.ledger.flush()
                await restore_spend(self.llm, self.engine, scopes)
            if providers.to_json() or changes.routes or changes.pricing:
                prices = PriceBook(policy.pricing, self.clock)
                warnings += await asyncio.to_thread(unpriced_models, policy, prices, providers.clients)
            wait = policy.mcp.startup_wait_seconds
            if starting and not await self.hub.wait_prepared(wait):
                warnings.append(
                    f"servers not answering after {wait:g} s (mcp.startup_wait_seconds): "
                    f"{', '.join(self.hub.prepared_not_ready())}; they join when they answer"
                )
            # The swap: nothing below awaits, so no request sees part of it.
            began = time.perf_counter()
            snapshot = self.state.install(prepared)
            servers = self.hub.adopt(policy)
            self.llm.adopt_providers(providers, policy.llm_proxy)
            if policy.gateway != old.gateway:
                self.apply_gateway_settings(policy.gateway)
            swap_ms = (time.perf_counter() - began) * 1000
        except BaseException:
            self.hub.discard_prepared()
            if providers is not None:
                self.llm.discard_providers(providers)
            raise
        summary = summarise(changes, {"servers": servers.to_json(), "providers": providers.to_json()})
        record = attempt.record(
            ReloadOutcome.APPLIED, snapshot.version, changes=summary, warnings=warnings, swap_ms=swap_ms
        )
        logger.info(
            "policy reload (%s) applied: snapshot %d in force after %.0f ms (swap %.1f ms): %s%s",
            attempt.trigger,
            snapshot.version,
            record.duration_ms,
            swap_ms,
            describe(summary),
            _tail(record.warnings),
        )
        return record

    def _refused(self, attempt: _Attempt, errors: list[str]) -> ReloadRecord:
        version = self.state.current.version
        record = attempt.record(ReloadOutcome.REFUSED, version, errors=errors)
        logger.error(
            "policy reload (%s) refused, snapshot %d stays in force: %s",
            attempt.trigger,
            version,
            " | ".join(record.errors),
        )
        return record


def _differs(path: Path, digest: str | None, attempt: _Attempt) -> str:
    ours = f"sha256 {digest[:12]}" if digest else "unreadable"
    theirs = (attempt.expected_digest or "")[:12]
    return (
        f"this replica's policy file {path} ({ours}) differs from the one replica {attempt.origin or '?'} "
        f"reloaded (sha256 {theirs}): replicas must share the policy file's content; nothing changed here"
    )


class _Attempt:
    """When an attempt started and how to write its record."""

    expected_digest: str | None = None
    origin: str | None = None

    def __init__(self, trigger: Trigger, source: PolicySource | None) -> None:
        self.trigger = trigger
        self.source = str(source.path) if source is not None else None
        self.started_at = now()
        self.began = time.perf_counter()
        self.id = uuid.uuid4().hex

    def record(
        self,
        outcome: ReloadOutcome,
        version: int,
        *,
        changes: dict[str, Any] | None = None,
        errors: list[str] | None = None,
        warnings: list[str] | None = None,
        swap_ms: float | None = None,
    ) -> ReloadRecord:
        return ReloadRecord(
            id=self.id,
            started_at=self.started_at,
            trigger=self.trigger,
            outcome=outcome,
            source=self.source,
            snapshot_version=version,
            duration_ms=(time.perf_counter() - self.began) * 1000,
            swap_ms=swap_ms,
            changes=changes or {},
            errors=bounded(errors or []),
            warnings=bounded(warnings or []),
        )


def _restart_warning(path: str) -> str:
    return f"{path} changed in the file; only a restart applies it, the running value stays in force"


def _tail(warnings: list[str]) -> str:
    if not warnings:
        return ""
    return f"; {len(warnings)} warning(s): " + " | ".join(warnings)


class ReloadRequests:
    """Reloads asked for from outside a request (SIGHUP, the watcher): run as tasks of their own, and
    held until the reloader exists when one arrives while the gateway is still starting."""

    def __init__(self) -> None:
        self.reloader: Reloader | None = None
        self._waiting: Trigger | None = None
        self._tasks: set[asyncio.Task[ReloadRecord]] = set()

    def bind(self, reloader: Reloader) -> None:
        self.reloader = reloader
        if self._waiting is not None:
            trigger, self._waiting = self._waiting, None
            self.request(trigger)

    def request(self, trigger: Trigger) -> None:
        if self.reloader is None:
            logger.info(
                "policy reload (%s) asked for while the gateway starts: it runs once it is up", trigger
            )
            self._waiting = trigger
            return
        task = asyncio.get_running_loop().create_task(self.reloader.reload(trigger), name=f"reload-{trigger}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """The gateway is stopping: cancel reloads under way."""
        self.reloader = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
