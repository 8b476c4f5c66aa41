"""Admin tokens: who may see the gateway's operational detail (and, later, use an admin API).

Two roles: ``admin`` (everything an admin API will offer) and ``auditor`` (read
only). Today either role opens the full ``/readyz`` detail. A token is declared
in the policy file the same way a virtual key is (its secret in an environment
variable, or only its SHA-256 in the file) and is looked up the same way: by
digest, compared in constant time. A virtual key is never an admin token: the
two may not share a secret source or a digest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.keys import KEY_ID_PATTERN, VirtualKeyConfig
from policies.secrets import digests_equal, hash_secret, normalised_sha256

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class AdminRole(StrEnum):
    ADMIN = "admin"
    AUDITOR = "auditor"


class AdminTokenConfig(BaseModel):
    """One admin token. The plain secret never appears in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=KEY_ID_PATTERN)] = Field(
        description="Names the token in logs and (later) in the admin API's records; never the secret."
    )
    role: AdminRole = Field(
        description="'admin' (full control once an admin API exists) or 'auditor' (read only). "
        "Either role may read the /readyz detail."
    )
    secret_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = Field(
        default=None, description="Environment variable holding the token's secret."
    )
    secret_sha256: str | None = Field(
        default=None, description="Lower-case hex SHA-256 of the secret, when the secret is kept elsewhere."
    )

    @field_validator("secret_sha256")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        return normalised_sha256(value)

    @model_validator(mode="after")
    def _one_secret_source(self) -> AdminTokenConfig:
        if bool(self.secret_env) == bool(self.secret_sha256):
            raise ValueError("give exactly one of secret_env or secret_sha256")
        return self


class AdminSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: list[AdminTokenConfig] = Field(
        default_factory=list,
        description="Admin and auditor tokens, sent as 'Authorization: Bearer <token>'.",
    )


def admin_conflicts(
    admin: AdminSettings, keys: list[VirtualKeyConfig]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Errors in the admin section: duplicate ids or digests, a secret shared with a virtual key."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    ids = Counter(t.id for t in admin.tokens)
    for token_id in sorted(i for i, n in ids.items() if n > 1):
        errors.append((("admin", "tokens"), f"admin token {token_id!r} is defined more than once"))
    digests = Counter(t.secret_sha256 for t in admin.tokens if t.secret_sha256)
    if any(n > 1 for n in digests.values()):
        errors.append((("admin", "tokens"), "two admin tokens share the same secret_sha256"))
    key_envs = {k.secret_env for k in keys if k.secret_env}
    key_digests = {k.secret_sha256 for k in keys if k.secret_sha256}
    for i, token in enumerate(admin.tokens):
        if token.secret_env in key_envs:
            errors.append(
                (
                    ("admin", "tokens", i, "secret_env"),
                    f"{token.secret_env} is also a virtual key's secret_env; an admin token needs its own",
                )
            )
        if token.secret_sha256 in key_digests:
            errors.append(
                (
                    ("admin", "tokens", i, "secret_sha256"),
                    "a virtual key has the same secret_sha256; an admin token needs its own secret",
                )
            )
    return errors


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    """Who presented an admin token. Never carries the secret."""

    token_id: str
    role: AdminRole


class AdminTokens:
    """Admin token lookup by SHA-256 digest, compared in constant time."""

    def __init__(self, by_digest: Mapping[str, AdminIdentity]) -> None:
        self._by_digest = dict(by_digest)

    @classmethod
    def from_settings(
        cls, settings: AdminSettings, environ: Mapping[str, str], *, key_digests: Collection[str] = ()
    ) -> tuple[AdminTokens, list[str]]:
        """The usable tokens and a warning for each one that is not: its variable is unset, or its
        secret is also a virtual key's (then it is refused as an admin token)."""
        by_digest: dict[str, AdminIdentity] = {}
        warnings: list[str] = []
        for token in settings.tokens:
            digest = token.secret_sha256
            if token.secret_env is not None:
                secret = environ.get(token.secret_env)
                if not secret:
                    warnings.append(
                        f"admin token {token.id!r}: environment variable {token.secret_env} is not set; "
                        "the token cannot be used"
                    )
                    continue
                digest = hash_secret(secret)
            assert digest is not None  # one source is required by the model
            if digest in key_digests:
                warnings.append(
                    f"admin token {token.id!r} has the same secret as a virtual key; it is not accepted "
                    "as an admin token until it gets its own secret"
                )
                continue
            by_digest[digest] = AdminIdentity(token.id, token.role)
        return cls(by_digest), warnings

    def __len__(self) -> int:
        return len(self._by_digest)

    def identify(self, secret: str | None) -> AdminIdentity | None:
        if not secret:
            return None
        return self.identify_digest(hash_secret(secret))

    def identify_digest(self, digest: str) -> AdminIdentity | None:
        """Who holds the token with this SHA-256 digest (a dashboard session re-checks its token this
        way on every request, without keeping the secret)."""
        for known, identity in self._by_digest.items():
            if digests_equal(known, digest):
                return identity
        return None
