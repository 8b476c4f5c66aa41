"""Virtual-key secrets kept in the database (``mcp-gateway keys create|list|revoke``).

Only the SHA-256 of a secret is stored, with a short prefix so people can tell
keys apart. A database key either gives a secret to a key declared in the
policy file (same id: the file decides its team and permissions) or stands
alone with the team given at creation, which must be a team the policy knows.

A key declared in the policy file can be revoked here too: a row in
``file_key_revocations`` makes every gateway on this database refuse that key's
file secret (``secret_env`` or ``secret_sha256``, whatever value it has now or
gets later). Database secrets created for the id after the revocation work.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from policies import GatewayPolicy
from policies.secrets import display_prefix, generate_secret, hash_secret


def utcnow() -> datetime:
    return datetime.now(UTC)


class ApiKey(SQLModel, table=True):
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

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class FileKeyRevocation(SQLModel, table=True):
    """A key declared in the policy file whose file secret is revoked (``keys revoke ID``)."""

    __tablename__ = "file_key_revocations"

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(unique=True, max_length=128)
    revoked_at: datetime = Field(default_factory=utcnow)


class KeyRequestError(ValueError):
    """A ``keys create`` the policy does not allow (unknown team, a team that contradicts the file)."""


def known_teams(policy: GatewayPolicy) -> set[str]:
    """The teams a key may belong to: the ``teams`` list, or without one every team the file names."""
    if policy.teams:
        return {t.name for t in policy.teams}
    named = {k.team for k in policy.virtual_keys if k.team is not None}
    named.update(policy.mcp.team_permissions)
    named.update(b.name for b in policy.budgets.teams)
    return named


def check_new_key(policy: GatewayPolicy, key_id: str, team: str | None) -> None:
    """Refuse a database secret whose team the policy does not know, or that contradicts the file."""
    declared = policy.key(key_id)
    if declared is not None:
        if team is not None and team != declared.team:
            said = f"team {declared.team!r}" if declared.team else "no team"
            raise KeyRequestError(
                f"key {key_id!r} is declared in the policy file with {said}; its database secrets take "
                "the file's team, so leave out --team (or change the file)"
            )
        return
    if team is None:
        return
    teams = known_teams(policy)
    if team not in teams:
        where = "declared under teams" if policy.teams else "named in the policy file"
        choices = ", ".join(sorted(teams)) or "none"
        raise KeyRequestError(f"team {team!r} is not {where} (known teams: {choices})")


def create_key(
    engine: Engine,
    key_id: str,
    *,
    name: str | None = None,
    team: str | None = None,
    expires_in: timedelta | None = None,
) -> tuple[ApiKey, str]:
    """Store a new secret for ``key_id``; returns the record and the plain secret (shown once)."""
    secret = generate_secret()
    record = ApiKey(
        key_id=key_id,
        name=name,
        team=team,
        secret_sha256=hash_secret(secret),
        prefix=display_prefix(secret),
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    with Session(engine) as db:
        db.add(record)
        db.commit()
        db.refresh(record)
    return record, secret


def list_keys(engine: Engine, include_revoked: bool = False) -> list[ApiKey]:
    with Session(engine) as db:
        stmt = select(ApiKey).order_by(ApiKey.key_id, ApiKey.created_at)  # type: ignore[arg-type]
        keys = list(db.exec(stmt).all())
    return [k for k in keys if include_revoked or k.revoked_at is None]


def revoke_key(engine: Engine, key_id: str) -> int:
    """Revoke every active secret of ``key_id``; returns how many were revoked."""
    now = utcnow()
    with Session(engine) as db:
        records = db.exec(select(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at == None)).all()  # noqa: E711
        for record in records:
            record.revoked_at = now
            db.add(record)
        db.commit()
        return len(records)


def revoke_file_key(engine: Engine, key_id: str) -> bool:
    """Record that the file secret of ``key_id`` is revoked; False if it already was."""
    with Session(engine) as db:
        if db.exec(select(FileKeyRevocation).where(FileKeyRevocation.key_id == key_id)).first():
            return False
        db.add(FileKeyRevocation(key_id=key_id))
        try:
            db.commit()
        except IntegrityError:  # revoked by someone else a moment ago
            return False
    return True


def file_key_revocations(engine: Engine) -> list[FileKeyRevocation]:
    with Session(engine) as db:
        return list(db.exec(select(FileKeyRevocation).order_by(FileKeyRevocation.key_id)).all())


def revoked_file_key_ids(engine: Engine) -> set[str]:
    with Session(engine) as db:
        return set(db.exec(select(FileKeyRevocation.key_id)).all())


def active_keys(engine: Engine) -> list[ApiKey]:
    now = utcnow()
    with Session(engine) as db:
        records = db.exec(select(ApiKey).where(ApiKey.revoked_at == None)).all()  # noqa: E711
    return [r for r in records if r.is_active(now)]
