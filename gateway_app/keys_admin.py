"""Managing the virtual keys kept in the database: create, list, show, update, revoke, rotate.

The one place that decides what a key change may be, for the CLI (``mcp-gateway keys``) and the
admin API alike; neither holds rules of its own. Settings are validated with the policy file's own
models (`policies.keys.KeySettings`) and, given the current policy, against it: a team must be one
the policy knows, tool permissions must name servers it defines, and a key the file declares takes
its settings from the file (only its expiry is its own). A plain secret is returned exactly once,
by `KeysAdmin.create` and `KeysAdmin.rotate`, and stored nowhere. Every change reaches running
gateways within about a second (`gateway_common.keystore`'s change counter).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from gateway_common import keystore
from gateway_common.keystore import ApiKey, utcnow
from policies import GatewayPolicy, Principal
from policies.keys import KEY_ID_PATTERN, KeySettings
from policies.permissions import PermissionSpec
from policies.secrets import digests_equal, hash_secret
from policies.yaml_source import format_path

DEFAULT_ROTATION_GRACE = timedelta(hours=1)
"""How long the secrets a rotation replaces keep working, unless the caller says otherwise."""
SETTING_FIELDS: tuple[str, ...] = tuple(KeySettings.model_fields)
_KEY_ID = re.compile(KEY_ID_PATTERN)
_NEEDS_POLICY = {"team": "a team", "tool_permissions": "tool permissions"}
_SPEC_SHAPES = 'tool_permissions must be "*", a list of servers, or {server: [tool globs] or "*"}'


class KeyRequestError(ValueError):
    """A key change that is refused; the message says why and what to do instead."""


class KeyNotFound(KeyRequestError):
    """No database key has this id (or all its secrets are revoked)."""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """One secret of a key, without the secret: how to recognise it and whether it works."""

    prefix: str
    created_at: datetime
    state: str
    """``active``, ``grace`` (replaced by a rotation, still working), ``replaced``, ``expired``,
    ``revoked``."""
    grace_until: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "state": self.state,
            "grace_until": self.grace_until.isoformat() if self.grace_until else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    settings: KeySettings
    created_at: datetime
    state: str
    """``active``, ``expired`` or ``revoked``."""
    secrets: tuple[SecretInfo, ...]
    declared_in_file: bool | None
    """Whether the policy file declares this id (then the file decides its settings); None: unknown
    (no policy given)."""

    @property
    def current_prefix(self) -> str:
        active = [s for s in self.secrets if s.state == "active"]
        return (active or list(self.secrets))[0].prefix

    @property
    def rotating_until(self) -> datetime | None:
        """The latest end of a replaced secret's grace, while one still works."""
        ends = [s.grace_until for s in self.secrets if s.state == "grace" and s.grace_until is not None]
        return max(ends) if ends else None

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "declared_in_file": self.declared_in_file,
            "settings": settings_json(self.settings),
            "secrets": [s.to_json() for s in self.secrets],
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created or rotated, with its new secret (the only time it exists in clear)."""

    key: KeyInfo
    secret: str
    replaced_until: datetime | None = None
    """After a rotation: until when the replaced secrets keep working."""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Revocation:
    database_secrets: int
    file_secret: bool
    """The policy file's secret of this id was revoked now."""
    file_secret_already_revoked: bool = False


def settings_json(settings: KeySettings) -> dict[str, Any]:
    """Every setting by name (null: inherited), in the policy file's shapes without their unset fields."""
    given = settings.model_dump(mode="json", exclude_none=True)
    return {name: given.get(name) for name in SETTING_FIELDS}


# -- validation ------------------------------------------------------------------------------


def _describe(error: ValidationError) -> str:
    problems = []
    for issue in error.errors(include_url=False):
        path = format_path(tuple(issue["loc"]))
        if path.startswith("tool_permissions"):
            problems.append(_SPEC_SHAPES)
            continue
        message = issue["msg"].removeprefix("Value error, ")
        if issue["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{path}: {message}")
    return "; ".join(dict.fromkeys(problems))


def parse_settings(values: Mapping[str, Any]) -> KeySettings:
    """Key settings in the policy file's shapes, validated by its own models; `KeyRequestError` names
    each bad field."""
    try:
        return KeySettings.model_validate(dict(values))
    except ValidationError as exc:
        raise KeyRequestError(_describe(exc)) from None


def known_teams(policy: GatewayPolicy) -> set[str]:
    """The teams a key may belong to: the ``teams`` list, or without one every team the file names."""
    if policy.teams:
        return {t.name for t in policy.teams}
    named = {k.team for k in policy.virtual_keys if k.team is not None}
    named.update(policy.mcp.team_permissions)
    named.update(b.name for b in policy.budgets.teams)
    return named


def _check_team(policy: GatewayPolicy, team: str) -> None:
    teams = known_teams(policy)
    if team not in teams:
        where = "declared under teams" if policy.teams else "named in the policy file"
        choices = ", ".join(sorted(teams)) or "none"
        raise KeyRequestError(f"team {team!r} is not {where} (known teams: {choices})")


def _check_permissions(policy: GatewayPolicy, spec: PermissionSpec) -> None:
    if spec == "*":
        return
    servers = {s.name for s in policy.mcp.servers}
    unknown = sorted(name for name in spec if name != "*" and name not in servers)
    if unknown:
        known = ", ".join(sorted(servers)) or "none"
        raise KeyRequestError(
            f"tool_permissions names servers the policy does not define: {', '.join(unknown)} "
            f"(servers: {known})"
        )


def check_settings(
    policy: GatewayPolicy | None, key_id: str, settings: KeySettings, fields: Iterable[str]
) -> None:
    """Refuse ``fields`` of ``settings`` that ``policy`` does not allow for ``key_id``."""
    given = [name for name in fields if getattr(settings, name) is not None]
    if policy is None:
        for name in given:
            if name in _NEEDS_POLICY:
                raise KeyRequestError(
                    f"{_NEEDS_POLICY[name]} is checked against the policy: give --config FILE"
                )
        return
    declared = policy.key(key_id)
    if declared is not None:
        if settings.team is not None and settings.team != declared.team:
            said = f"team {declared.team!r}" if declared.team else "no team"
            raise KeyRequestError(
                f"key {key_id!r} is declared in the policy file with {said}; its database secrets take "
                "the file's team, so leave out --team (or change the file)"
            )
        own = [name for name in given if name not in ("team", "expires_at")]
        if own:
            raise KeyRequestError(
                f"key {key_id!r} is declared in the policy file, which decides its {', '.join(own)}: change "
                "the file (only the expiry of its database secret is set here)"
            )
        return
    if settings.team is not None and "team" in given:
        _check_team(policy, settings.team)
    if settings.tool_permissions is not None and "tool_permissions" in given:
        _check_permissions(policy, settings.tool_permissions)


# -- the service -----------------------------------------------------------------------------


class KeysAdmin:
    """Key changes against one database, checked against one policy (None: shape checks only)."""

    def __init__(
        self, engine: Engine, policy: GatewayPolicy | None, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock

    # -- reading -------------------------------------------------------------------------

    def _info(self, key_id: str, rows: list[ApiKey]) -> KeyInfo:
        now = self.clock()
        current = keystore.current_row(rows)
        base = current or max(
            rows, key=lambda r: (r.created_at, r.id or 0)
        )  # a revoked key: its last settings
        secrets = tuple(
            SecretInfo(r.prefix, r.created_at, r.state(now), r.grace_until, r.revoked_at)
            for r in sorted(rows, key=lambda r: (r.created_at, r.id or 0), reverse=True)
        )
        if current is None:
            state = "revoked"
        else:
            state = "active" if any(s.state in ("active", "grace") for s in secrets) else "expired"
        return KeyInfo(
            key_id,
            base.settings(),
            min(r.created_at for r in rows),
            state,
            secrets,
            None if self.policy is None else self.policy.key(key_id) is not None,
        )

    def keys(self, include_revoked: bool = False) -> list[KeyInfo]:
        """Every key with an unrevoked secret (``include_revoked``: every key ever created), by id."""
        by_key: dict[str, list[ApiKey]] = {}
        for row in keystore.list_keys(self.engine, include_revoked=True):
            by_key.setdefault(row.key_id, []).append(row)
        found = [self._info(key_id, rows) for key_id, rows in sorted(by_key.items())]
        return [k for k in found if include_revoked or k.state != "revoked"]

    def file_revocations(self) -> list[keystore.FileKeyRevocation]:
        return keystore.file_key_revocations(self.engine)

    def show(self, key_id: str) -> KeyInfo:
        rows = keystore.key_rows(self.engine, key_id, include_revoked=True)
        if not rows:
            raise KeyNotFound(f"no key {key_id!r} in the database")
        return self._info(key_id, rows)

    def _live(self, key_id: str) -> KeyInfo:
        rows = keystore.key_rows(self.engine, key_id)
        if not rows:
            hint = " (its secret comes from the policy file)" if self._declared(key_id) else ""
            raise KeyNotFound(f"no active database key {key_id!r}{hint}")
        return self._info(key_id, rows)

    def _declared(self, key_id: str) -> bool:
        return self.policy is not None and self.policy.key(key_id) is not None

    def verify_secret(self, key_id: str, secret: str, environ: Mapping[str, str] | None = None) -> bool:
        """Whether ``secret`` is a working secret of ``key_id``: a database one, or the file's (its
        ``secret_sha256``, or the value of its ``secret_env`` in ``environ``) unless that was revoked."""
        digest = hash_secret(secret)
        now = self.clock()
        for row in keystore.key_rows(self.engine, key_id):
            if row.is_active(now) and digests_equal(row.secret_sha256, digest):
                return True
        declared = self.policy.key(key_id) if self.policy is not None else None
        if declared is None or declared.disabled or key_id in keystore.revoked_file_key_ids(self.engine):
            return False
        file_digest = declared.secret_sha256
        if file_digest is None and declared.secret_env:
            value = (os.environ if environ is None else environ).get(declared.secret_env)
            file_digest = hash_secret(value) if value else None
        return file_digest is not None and digests_equal(file_digest, digest)

    def subject(self, key_id: str) -> tuple[Principal, list[str] | None]:
        """Who ``key_id`` is to a gateway on this policy, and its own allowed models (None: the
        policy decides): what onboarding needs to choose a model. Raises `KeyNotFound`."""
        declared = self.policy.key(key_id) if self.policy is not None else None
        if declared is not None:
            return Principal(key_id, declared.display_name, declared.team, "file"), None
        key = self._live(key_id)
        settings = key.settings
        return Principal(key_id, settings.name or key_id, settings.team, "database"), settings.allowed_models

    # -- changes -------------------------------------------------------------------------

    def create(self, key_id: str, settings: KeySettings) -> IssuedKey:
        """A new key with a new secret. Refused for an id that already has a working database key
        (`rotate` gives it a new secret, `update` changes it)."""
        if not _KEY_ID.match(key_id):
            raise KeyRequestError(
                f"key id {key_id!r} must be 1-128 letters, digits or _ . : - and start with a letter or digit"
            )
        check_settings(self.policy, key_id, settings, SETTING_FIELDS)
        now = self.clock()
        if settings.expires_at is not None and settings.expires_at <= now:
            raise KeyRequestError(f"the expiry {settings.expires_at.isoformat()} is in the past")
        if keystore.key_rows(self.engine, key_id):
            raise KeyRequestError(
                f"key {key_id!r} already exists: `keys rotate {key_id}` gives it a new secret, "
                f"`keys update {key_id}` changes its settings, `keys revoke {key_id}` ends it"
            )
        _, secret = keystore.create_key(self.engine, key_id, settings, now=now)
        notes = []
        if key_id in keystore.revoked_file_key_ids(self.engine):
            notes.append(f"the policy-file secret of {key_id!r} stays revoked; this new secret works")
        return IssuedKey(self._live(key_id), secret, notes=notes)

    def update(self, key_id: str, changes: Mapping[str, Any], unset: Iterable[str] = ()) -> KeyInfo:
        """Change some settings of a key (``changes``, in the policy file's shapes) and return others
        to inheriting (``unset``: field names)."""
        cleared = set(unset)
        unknown = sorted((cleared | set(changes)) - set(SETTING_FIELDS))
        if unknown:
            raise KeyRequestError(
                f"unknown setting(s) {', '.join(unknown)} (settings: {', '.join(SETTING_FIELDS)})"
            )
        both = sorted(cleared & set(changes))
        if both:
            raise KeyRequestError(f"{', '.join(both)}: both set and unset")
        if not changes and not cleared:
            raise KeyRequestError("nothing to change")
        key = self._live(key_id)
        merged = key.settings.model_dump(mode="json", exclude_none=True)
        merged.update(changes)
        for name in cleared:
            merged.pop(name, None)
        settings = parse_settings(merged)
        check_settings(self.policy, key_id, settings, changes)
        keystore.update_key(self.engine, key_id, settings)
        return self._live(key_id)

    def revoke(self, key_id: str) -> Revocation:
        """Revoke every database secret of ``key_id`` and, when the policy declares it with a secret,
        the file's secret too (recorded in the database, whatever value that secret has later)."""
        count = keystore.revoke_key(self.engine, key_id)
        declared = self.policy.key(key_id) if self.policy is not None else None
        has_file_secret = declared is not None and bool(declared.secret_env or declared.secret_sha256)
        file_revoked = has_file_secret and keystore.revoke_file_key(self.engine, key_id)
        return Revocation(count, file_revoked, has_file_secret and not file_revoked)

    def rotate(self, key_id: str, grace: timedelta = DEFAULT_ROTATION_GRACE) -> IssuedKey:
        """A new secret for ``key_id``; the secrets it replaces keep working for ``grace`` (0: stop now)."""
        if grace < timedelta(0):
            raise KeyRequestError("the grace period cannot be negative")
        key = self._live(key_id)
        now = self.clock()
        expires = key.settings.expires_at
        if expires is not None and expires <= now:
            raise KeyRequestError(
                f"key {key_id!r} expired on {expires:%Y-%m-%d %H:%M} UTC: renew it first "
                f"(`keys update {key_id} --expires-in 90d`)"
            )
        until = now + grace
        _, secret = keystore.rotate_key(self.engine, key_id, until, now=now)
        return IssuedKey(self._live(key_id), secret, replaced_until=until)
