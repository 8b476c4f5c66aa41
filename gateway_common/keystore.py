"""Virtual keys kept in the database: their settings, their secrets, and the signal that they changed.

One row of ``api_keys`` is one secret of a key (only its SHA-256 is stored, with a short prefix so
people can tell secrets apart). A key has one current secret, plus, for a while after
``keys rotate``, the secrets it replaced (``grace_until``: they work until then). Its settings
(name, team, allowed models, rate limit, budget, tool permissions, expiry: `policies.keys.KeySettings`)
are kept on each of its rows, and every change writes them to all of them; readers take them from
the newest current row. What may be written (teams the policy knows, which keys exist) is decided by
`gateway_app.keys_admin`; this module only stores.

A key declared in the policy file can be revoked here too: a row in ``file_key_revocations`` makes
every gateway on this database refuse that key's file secret (``secret_env`` or ``secret_sha256``,
whatever value it has now or gets later). Database secrets created for the id after the revocation
work.

Every change also bumps the one row of ``key_changes`` in the same transaction: each gateway polls
that counter (one tiny query a second, `key_change_version`) and reloads its keys as soon as it moves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import JSON, Column, Engine, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from policies.keys import KeySettings
from policies.secrets import display_prefix, generate_secret, hash_secret
from policies.snapshot import StoredKey, StoredSecret

logger = logging.getLogger("gateway_common.keys")

ENDED_KEYS_KEPT = timedelta(days=30)
"""Expired secrets (and replaced ones past their grace) stay known this long, so their holders are
told "expired on ..." rather than "invalid"; after that they are unknown like any other string."""

_SETTING_COLUMNS = (
    "name",
    "team",
    "allowed_models",
    "rate_limit",
    "budget",
    "tool_permissions",
    "expires_at",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ApiKey(SQLModel, table=True):
    """One secret of a database key, with the key's settings (the same on all its rows)."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(index=True, max_length=128)
    name: str | None = None
    team: str | None = None
    secret_sha256: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    allowed_models: Any = Field(default=None, sa_column=Column(JSON))
    """A JSON list of model names or globs; null inherits."""
    rate_limit: Any = Field(default=None, sa_column=Column(JSON))
    """A JSON object shaped like a file key's ``rate_limit``; null: none of its own."""
    budget: Any = Field(default=None, sa_column=Column(JSON))
    """A JSON object shaped like a ``budgets.virtual_key_overrides`` entry (without ``id``)."""
    tool_permissions: Any = Field(default=None, sa_column=Column(JSON))
    """JSON shaped like an ``mcp.virtual_key_permissions`` entry; null inherits the team's."""
    grace_until: datetime | None = None
    """Set when ``keys rotate`` replaced this secret: it keeps working until then."""

    def settings(self) -> KeySettings:
        """The key's settings as stored on this row (raises `ValidationError` for a hand-edited bad one)."""
        return KeySettings.model_validate({name: getattr(self, name) for name in _SETTING_COLUMNS})

    def store(self, settings: KeySettings) -> None:
        stored = settings.model_dump(mode="json", exclude_none=True)
        for name in _SETTING_COLUMNS:
            setattr(self, name, getattr(settings, name) if name == "expires_at" else stored.get(name))

    def ends_at(self) -> datetime | None:
        """When this secret stops working: the key's expiry, or the end of its grace if earlier."""
        ends = [t for t in (self.expires_at, self.grace_until) if t is not None]
        return min(ends) if ends else None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``grace`` (replaced, still working), ``replaced``, ``expired`` or ``revoked``."""
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.grace_until is not None:
            return "grace" if self.grace_until > now else "replaced"
        return "active"

    def is_active(self, now: datetime | None = None) -> bool:
        return self.state(now) in ("active", "grace")


class FileKeyRevocation(SQLModel, table=True):
    """A key declared in the policy file whose file secret is revoked (``keys revoke ID``)."""

    __tablename__ = "file_key_revocations"

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(unique=True, max_length=128)
    revoked_at: datetime = Field(default_factory=utcnow)


class KeyChange(SQLModel, table=True):
    """One row (id 1) whose ``version`` every change to keys or revocations increments."""

    __tablename__ = "key_changes"

    id: int | None = Field(default=None, primary_key=True)
    version: int = 0
    changed_at: datetime | None = None


KEY_CHANGE_ROW = 1


def bump_key_change(db: Session) -> None:
    """Count one change, in ``db``'s transaction (it commits with the change it signals)."""
    statement = (
        update(KeyChange)
        .where(col(KeyChange.id) == KEY_CHANGE_ROW)
        .values(version=col(KeyChange.version) + 1, changed_at=utcnow())
    )
    if db.exec(statement).rowcount == 0:
        db.add(KeyChange(id=KEY_CHANGE_ROW, version=1, changed_at=utcnow()))


def key_change_version(engine: Engine) -> int:
    """The change counter (0 before the first change): what gateways poll every second."""
    with engine.connect() as connection:
        found = connection.execute(
            select(KeyChange.version).where(col(KeyChange.id) == KEY_CHANGE_ROW)
        ).scalar_one_or_none()
    return int(found or 0)


def _new_row(key_id: str, settings: KeySettings, now: datetime) -> tuple[ApiKey, str]:
    secret = generate_secret()
    row = ApiKey(
        key_id=key_id, secret_sha256=hash_secret(secret), prefix=display_prefix(secret), created_at=now
    )
    row.store(settings)
    return row, secret


def create_key(
    engine: Engine, key_id: str, settings: KeySettings | None = None, *, now: datetime | None = None
) -> tuple[ApiKey, str]:
    """Store a new key (or a new secret for an id without one); returns the row and the plain secret,
    which exists nowhere else."""
    row, secret = _new_row(key_id, settings or KeySettings(), now or utcnow())
    with Session(engine) as db:
        db.add(row)
        bump_key_change(db)
        db.commit()
        db.refresh(row)
    return row, secret


def key_rows(engine: Engine, key_id: str, *, include_revoked: bool = False) -> list[ApiKey]:
    """The rows (secrets) of one key, newest first."""
    with Session(engine) as db:
        statement = select(ApiKey).where(ApiKey.key_id == key_id)
        if not include_revoked:
            statement = statement.where(col(ApiKey.revoked_at).is_(None))
        return list(db.exec(statement.order_by(col(ApiKey.created_at).desc(), col(ApiKey.id).desc())).all())


def current_row(rows: Iterable[ApiKey]) -> ApiKey | None:
    """The row whose settings are the key's: the newest unrevoked one not replaced by a rotation."""
    live = sorted((r for r in rows if r.revoked_at is None), key=lambda r: (r.created_at, r.id or 0))
    current = [r for r in live if r.grace_until is None]
    chosen = current or live
    return chosen[-1] if chosen else None


def list_keys(engine: Engine, include_revoked: bool = False) -> list[ApiKey]:
    with Session(engine) as db:
        statement = select(ApiKey).order_by(col(ApiKey.key_id), col(ApiKey.created_at))
        keys = list(db.exec(statement).all())
    return [k for k in keys if include_revoked or k.revoked_at is None]


def update_key(engine: Engine, key_id: str, settings: KeySettings) -> int:
    """Write ``settings`` to every unrevoked row of ``key_id``; returns how many there were."""
    with Session(engine) as db:
        rows = db.exec(select(ApiKey).where(ApiKey.key_id == key_id, col(ApiKey.revoked_at).is_(None))).all()
        for row in rows:
            row.store(settings)
            db.add(row)
        if rows:
            bump_key_change(db)
        db.commit()
        return len(rows)


def rotate_key(
    engine: Engine, key_id: str, grace_until: datetime, *, now: datetime | None = None
) -> tuple[ApiKey, str]:
    """Give ``key_id`` a new secret; its current secrets keep working until ``grace_until`` (earlier
    grace periods are only ever shortened). Raises `LookupError` if the key has no unrevoked secret."""
    now = now or utcnow()
    with Session(engine) as db:
        rows = list(
            db.exec(select(ApiKey).where(ApiKey.key_id == key_id, col(ApiKey.revoked_at).is_(None))).all()
        )
        current = current_row(rows)
        if current is None:
            raise LookupError(key_id)
        row, secret = _new_row(key_id, current.settings(), now)
        for old in rows:
            if old.grace_until is None or old.grace_until > grace_until:
                old.grace_until = grace_until
                db.add(old)
        db.add(row)
        bump_key_change(db)
        db.commit()
        db.refresh(row)
    return row, secret


def revoke_key(engine: Engine, key_id: str) -> int:
    """Revoke every unrevoked secret of ``key_id``; returns how many were revoked."""
    now = utcnow()
    with Session(engine) as db:
        records = db.exec(
            select(ApiKey).where(ApiKey.key_id == key_id, col(ApiKey.revoked_at).is_(None))
        ).all()
        for record in records:
            record.revoked_at = now
            db.add(record)
        if records:
            bump_key_change(db)
        db.commit()
        return len(records)


def revoke_file_key(engine: Engine, key_id: str) -> bool:
    """Record that the file secret of ``key_id`` is revoked; False if it already was."""
    with Session(engine) as db:
        if db.exec(select(FileKeyRevocation).where(FileKeyRevocation.key_id == key_id)).first():
            return False
        db.add(FileKeyRevocation(key_id=key_id))
        bump_key_change(db)
        try:
            db.commit()
        except IntegrityError:  # revoked by someone else a moment ago
            return False
    return True


def file_key_revocations(engine: Engine) -> list[FileKeyRevocation]:
    with Session(engine) as db:
        return list(db.exec(select(FileKeyRevocation).order_by(col(FileKeyRevocation.key_id))).all())


def revoked_file_key_ids(engine: Engine) -> set[str]:
    with Session(engine) as db:
        return set(db.exec(select(FileKeyRevocation.key_id)).all())


def load_stored_keys(engine: Engine, now: datetime | None = None) -> tuple[StoredKey, ...]:
    """Every unrevoked key as the policy snapshot needs it, with the secrets that work or ended less
    than `ENDED_KEYS_KEPT` ago. A key whose stored settings are invalid (edited by hand) is left out
    and logged: refusing it is safer than guessing."""
    now = now or utcnow()
    kept_from = now - ENDED_KEYS_KEPT
    with Session(engine) as db:
        rows = db.exec(
            select(ApiKey).where(col(ApiKey.revoked_at).is_(None)).order_by(col(ApiKey.key_id))
        ).all()
    by_key: dict[str, list[ApiKey]] = {}
    for row in rows:
        by_key.setdefault(row.key_id, []).append(row)
    stored = []
    for key_id, key_rows_ in by_key.items():
        current = current_row(key_rows_)
        assert current is not None
        try:
            settings = current.settings()
        except ValidationError as exc:
            logger.error("database key %r has invalid settings and is refused: %s", key_id, exc)
            continue
        secrets = tuple(
            StoredSecret(r.secret_sha256, r.grace_until)
            for r in sorted(key_rows_, key=lambda r: r.secret_sha256)
            if (ends := r.ends_at()) is None or ends > kept_from
        )
        if secrets:
            stored.append(StoredKey(key_id, settings, secrets))
    return tuple(stored)
