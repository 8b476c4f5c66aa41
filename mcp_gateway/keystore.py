"""Virtual-key secrets kept in the database (``mcp-gateway keys create|list|revoke``).

Only the SHA-256 of a secret is stored, with a short prefix so people can tell
keys apart. A database key either gives a secret to a key declared in the
policy file (same id: the file decides its team and permissions) or stands
alone with the team given at creation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel, select

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


def active_keys(engine: Engine) -> list[ApiKey]:
    now = utcnow()
    with Session(engine) as db:
        records = db.exec(select(ApiKey).where(ApiKey.revoked_at == None)).all()  # noqa: E711
    return [r for r in records if r.is_active(now)]
