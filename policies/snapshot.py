"""One immutable policy snapshot: every per-request decision, from one policy and one set of keys.

A snapshot is built from the policy file plus the keys kept in the database
(`build_snapshot`) and never changes afterwards. A request reads the current
snapshot once and takes every decision from it: who the caller is, which tools
it may see and call, its rate plan, its budgets, which models it may use and
where they go. Building a new snapshot and swapping it in (a reload, a key
created or revoked) therefore never gives one request a mix of old and new
decisions, and nothing needs to be invalidated: the old snapshot and all its
memos simply stop being used.

A database key's own settings (`policies.keys.KeySettings`: models, limits, budget,
tool permissions) are its own entries exactly as a file key's are: each wins over its
team's, and an unset one inherits. A database key with the id of a file key is that
file key (only its expiry is its own).

The memos inside (per key and team) are caches of pure functions of the snapshot,
bounded, and private to it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from policies.admin import AdminTokens
from policies.bounds import MAX_NAME_CHARS
from policies.budgeting import BudgetScope, BudgetScopes
from policies.config import GatewayPolicy
from policies.counters import Clock
from policies.keys import KeySettings, Principal
from policies.permissions import Grant
from policies.pricing import PriceBook
from policies.ratelimit import RatePlan, build_rate_plan
from policies.routing import ModelRouter, ProviderKind, Target
from policies.secrets import digests_equal, hash_secret

_MEMO_LIMIT = 10_000
"""Entries per memo; a memo that fills up is emptied (a flood of distinct keys or models)."""


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One secret of a database key, as a digest."""

    sha256: str
    grace_until: datetime | None = None
    """Set when `keys rotate` replaced this secret: it keeps working until then (its grace period)."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A virtual key kept in the database, as a snapshot needs it: its own settings (unset fields
    inherit) and its usable secrets."""

    key_id: str
    settings: KeySettings
    secrets: tuple[StoredSecret, ...]


@dataclass(frozen=True, slots=True)
class KeyEntry:
    digest: str
    principal: Principal
    expires_at: datetime | None
    replaced: bool = False
    """``expires_at`` is the end of the grace period of a secret that a rotation replaced."""

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def refusal(self) -> str:
        """What the holder of this (expired) secret is told; it names nothing they do not know."""
        assert self.expires_at is not None
        when = self.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        key = self.principal.key_id
        if self.replaced:
            return (
                f"This secret of virtual key {key!r} was replaced by a new one (key rotation) and stopped "
                f"working on {when}: use the new secret"
            )
        return f"Virtual key {key!r} expired on {when}: ask the gateway's administrator to renew it"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """Where a caller's model request goes, and the caller's budgets that it is charged to."""

    targets: tuple[Target, ...]
    """Targets of the provider kind the endpoint speaks, in order; later ones are fallbacks."""
    route: str | None
    budget_scopes: tuple[BudgetScope, ...]
    """The caller's budgets (org, team, key); provider budgets are reserved per target."""


@dataclass(frozen=True, slots=True)
class ModelRefused:
    reason: Literal["unrouted", "other_api", "not_allowed"]
    """No route matches; routed only to providers of the other API; the key may not use it."""


class PolicySnapshot:
    """Every per-request decision under one policy and one set of keys. Treat it as immutable."""

    def __init__(
        self,
        version: int,
        policy: GatewayPolicy,
        keys: Mapping[str, KeyEntry],
        virtual_key_digests: frozenset[str],
        admin: AdminTokens,
        clock: Clock,
        own_settings: Mapping[str, KeySettings] | None = None,
    ) -> None:
        self.version = version
        """Counts snapshots in this process (for logs and the admin API; not stable across restarts)."""
        self.policy = policy
        self.admin = admin
        own = dict(own_settings or {})
        self._own = own
        """Database keys' own settings by key id (keys the file declares are not in it: the file decides)."""
        self.router = ModelRouter(
            policy, {k: tuple(s.allowed_models) for k, s in own.items() if s.allowed_models is not None}
        )
        self.budget_scopes = BudgetScopes(
            policy, {k: s.budget for k, s in own.items() if s.budget is not None}
        )
        self.prices = PriceBook(policy.pricing, clock)
        self._clock = clock
        self._keys = dict(keys)
        self._virtual_key_digests = virtual_key_digests
        self._grants: dict[tuple[str, str | None], Grant] = {}
        self._rate_plans: dict[tuple[str, str | None], RatePlan] = {}
        self._caller_budgets: dict[tuple[str, str | None], tuple[BudgetScope, ...]] = {}
        self._models: dict[tuple[str, str | None, str, str], ModelRoute | ModelRefused] = {}

    # -- who is calling ------------------------------------------------------------------

    def identify(self, secret: str, now: datetime | None = None) -> Principal | None:
        """The principal a secret belongs to, or None (unknown, revoked, disabled or expired)."""
        return self.principal_for(hash_secret(secret), now)

    def principal_for(self, digest: str, now: datetime | None = None) -> Principal | None:
        """`identify` for a secret's digest."""
        entry = self._keys.get(digest)
        if entry is None or not digests_equal(entry.digest, digest):
            return None
        if entry.expires_at is not None and entry.expired(now or self.now()):
            return None
        return entry.principal

    def anonymous_principal(self, now: datetime | None = None) -> Principal | None:
        """Who serves a credential-less /mcp request (``mcp.anonymous_key``): that key while it works,
        else None (off, revoked, disabled or expired)."""
        key_id = self.policy.mcp.anonymous_key
        if key_id is None:
            return None
        when = now or self.now()
        for entry in self._keys.values():
            if entry.principal.key_id == key_id and not entry.expired(when):
                return entry.principal
        return None

    def knows_digest(self, digest: str) -> bool:
        """Whether a digest is one of this snapshot's key entries (usable or expired)."""
        return digest in self._keys

    def refusal(self, secret: str, now: datetime | None = None) -> str | None:
        """Why a secret this snapshot knows is refused (expired; replaced by a rotation and past its
        grace), for its holder; None for every other secret, so that nothing is said about those."""
        entry = self._keys.get(hash_secret(secret))
        if entry is None or not entry.expired(now or self.now()):
            return None
        return entry.refusal()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def usable_key_ids(self, now: datetime) -> dict[str, str]:
        """Digest -> key id of every secret that works at ``now``."""
        return {d: e.principal.key_id for d, e in self._keys.items() if not e.expired(now)}

    def knows_secret(self, digest: str) -> bool:
        """Whether a digest is any virtual key's (usable or revoked): never an admin token."""
        return digest in self._keys or digest in self._virtual_key_digests

    @property
    def key_count(self) -> int:
        return len(self._keys)

    # -- decisions -----------------------------------------------------------------------

    def grant(self, principal: Principal) -> Grant:
        memo_key = (principal.key_id, principal.team)
        grant = self._grants.get(memo_key)
        if grant is None:
            grant = _remember(self._grants, memo_key, self._tool_grant(principal))
        return grant

    def _tool_grant(self, principal: Principal) -> Grant:
        own = self._own.get(principal.key_id)
        if own is not None and own.tool_permissions is not None:
            return Grant.from_spec(own.tool_permissions, f"key:{principal.key_id}")
        return self.policy.tool_grant(principal)

    def rate_plan(self, principal: Principal) -> RatePlan:
        memo_key = (principal.key_id, principal.team)
        plan = self._rate_plans.get(memo_key)
        if plan is None:
            own = self._own.get(principal.key_id)
            limits = own.rate_limit if own is not None else None
            plan = _remember(self._rate_plans, memo_key, build_rate_plan(self.policy, principal, limits))
        return plan

    def caller_budgets(self, principal: Principal) -> tuple[BudgetScope, ...]:
        memo_key = (principal.key_id, principal.team)
        scopes = self._caller_budgets.get(memo_key)
        if scopes is None:
            scopes = _remember(self._caller_budgets, memo_key, self.budget_scopes.caller_scopes(principal))
        return scopes

    def route_model(self, principal: Principal, model: str, kind: ProviderKind) -> ModelRoute | ModelRefused:
        """Where ``model`` goes for this caller on an endpoint speaking ``kind``, or why it may not."""
        memo_key = (principal.key_id, principal.team, model, kind)
        found = self._models.get(memo_key)
        if found is not None:
            return found
        found = self._route_model(principal, model, kind)
        if len(model) <= MAX_NAME_CHARS:  # a flood of huge distinct names must not fill memory
            _remember(self._models, memo_key, found)
        return found

    def _route_model(self, principal: Principal, model: str, kind: ProviderKind) -> ModelRoute | ModelRefused:
        routed = self.router.route(model, principal)
        if routed is None:
            return ModelRefused("unrouted")
        targets = tuple(t for t in routed.targets if t.kind == kind)
        if not targets:
            return ModelRefused("other_api")
        if not self.router.allows(principal, model, targets[0].model):
            return ModelRefused("not_allowed")
        return ModelRoute(targets, routed.route, self.caller_budgets(principal))


K = TypeVar("K")
V = TypeVar("V")


def _remember(memo: dict[K, V], key: K, value: V) -> V:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def file_key_entries(
    policy: GatewayPolicy, environ: Mapping[str, str]
) -> tuple[dict[str, KeyEntry], frozenset[str]]:
    """The keys the policy file declares with a secret: usable entries by digest, and every digest
    (disabled keys included) so that none of them can ever serve as an admin token."""
    entries: dict[str, KeyEntry] = {}
    digests: set[str] = set()
    for key in policy.virtual_keys:
        digest = key.secret_sha256
        if digest is None and key.secret_env:
            secret = environ.get(key.secret_env)
            digest = hash_secret(secret) if secret else None
        if digest is None:
            continue
        digests.add(digest)
        if key.disabled:
            continue
        expires = key.expires_at
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        entries[digest] = KeyEntry(digest, Principal(key.id, key.display_name, key.team, "file"), expires)
    return entries, frozenset(digests)


def stored_key_entries(policy: GatewayPolicy, stored: StoredKey) -> list[KeyEntry]:
    """A database key's secrets. A key with the id of a file key is that key: the file decides its
    name, team and everything else (and it is off while the file disables it); only its expiry is
    its own. Any other stands alone with its own settings (`KeySettings`: unset ones inherit)."""
    declared = policy.key(stored.key_id)
    settings = stored.settings
    if declared is not None:
        if declared.disabled:
            return []
        principal = Principal(stored.key_id, declared.display_name, declared.team, "database")
    else:
        principal = Principal(stored.key_id, settings.name or stored.key_id, settings.team, "database")
    entries = []
    for secret in stored.secrets:
        expires, replaced = settings.expires_at, False
        until = secret.grace_until
        if until is not None and (expires is None or until < expires):
            expires, replaced = until, True
        entries.append(KeyEntry(secret.sha256, principal, expires, replaced))
    return entries


def ended_key_ids(old: PolicySnapshot, new: PolicySnapshot, now: datetime) -> frozenset[str]:
    """Keys that had a working secret in ``old`` which ``new`` no longer accepts (revoked, removed
    from the file, disabled, expiry moved into the past): what they hold open must end."""
    usable = new.usable_key_ids(now)
    return frozenset(key for digest, key in old.usable_key_ids(now).items() if digest not in usable)


def build_snapshot(
    policy: GatewayPolicy,
    *,
    version: int,
    environ: Mapping[str, str],
    stored_keys: Iterable[StoredKey] = (),
    revoked_file_keys: Collection[str] = (),
    clock: Clock,
) -> tuple[PolicySnapshot, list[str]]:
    """A snapshot of ``policy`` with the database's keys, and warnings for an admin (unusable admin
    tokens). File keys whose id was revoked in the database are left out (their digests still never
    serve as admin tokens)."""
    file_entries, file_digests = file_key_entries(policy, environ)
    keys = {d: e for d, e in file_entries.items() if e.principal.key_id not in revoked_file_keys}
    own: dict[str, KeySettings] = {}
    for stored in stored_keys:
        for entry in stored_key_entries(policy, stored):
            keys.setdefault(entry.digest, entry)
        if policy.key(stored.key_id) is None:
            own[stored.key_id] = stored.settings
    admin, warnings = AdminTokens.from_settings(policy.admin, environ, key_digests=file_digests | set(keys))
    return PolicySnapshot(version, policy, keys, file_digests, admin, clock, own), warnings
