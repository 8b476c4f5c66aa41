"""Teams, virtual keys and the identity a request carries once its key is known."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.budgets import BudgetLimits
from policies.limits import RateLimit
from policies.permissions import PermissionSpec
from policies.secrets import normalised_sha256

KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
TEAM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class TeamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=TEAM_NAME_PATTERN, description="Unique team name; keys, permissions and budgets refer to it."
    )
    description: str | None = Field(default=None, description="Free text for people reading the file.")
    allowed_models: list[str] | None = Field(
        default=None, description="Model globs for keys of this team that set none themselves."
    )
    rate_limit: RateLimit | None = Field(
        default=None, description="Limits shared by all keys of the team together."
    )


class VirtualKeyConfig(BaseModel):
    """A key declared in the policy file.

    The plain secret never appears in the file: either ``secret_env`` names an
    environment variable holding it, or ``secret_sha256`` holds its digest. A key
    with neither gets its secret from ``mcp-gateway keys create <id>``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=KEY_ID_PATTERN,
        description="Unique key id: what the audit log, the ledger, limits and permissions are keyed by.",
    )
    name: str | None = Field(default=None, description="Display name; default: the id.")
    team: str | None = Field(
        default=None, description="Team the key belongs to: it inherits the team's permissions and models."
    )
    secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable that holds the key's secret.",
    )
    secret_sha256: str | None = Field(
        default=None,
        description="SHA-256 (hex) of the key's secret, when the secret itself is kept elsewhere.",
    )
    provider_config: str | None = Field(
        default=None, description="Default provider for models that no route matches."
    )
    allowed_models: list[str] | None = Field(
        default=None, description="Model names or globs; absent inherits the team's, else any routed model."
    )
    rate_limit: RateLimit | None = Field(default=None, description="Limits for this key alone.")
    expires_at: datetime | None = Field(
        default=None, description="ISO 8601 time after which the key is refused (UTC unless it names a zone)."
    )
    disabled: bool = Field(default=False, description="true refuses the key without deleting it.")
    audit_content: bool = Field(
        default=True,
        description=(
            "false: the audit log stores no arguments and no results of this key's tool calls (a marker "
            "says why); who called what, when and with which outcome is still recorded. A key created "
            "with `mcp-gateway keys create` under this id follows it too."
        ),
    )

    @field_validator("secret_sha256")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        return normalised_sha256(value)

    @model_validator(mode="after")
    def _one_secret_source(self) -> VirtualKeyConfig:
        if self.secret_env and self.secret_sha256:
            raise ValueError("give either secret_env or secret_sha256, not both")
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.id


class KeySettings(BaseModel):
    """What a key kept in the database says about itself (``mcp-gateway keys create|update``).

    The same shapes as the policy file's: ``rate_limit`` as a file key's, ``budget`` as an entry of
    ``budgets.virtual_key_overrides``, ``tool_permissions`` as an entry of
    ``mcp.virtual_key_permissions``. A field left unset inherits, exactly as for a file key: the
    key's team's models and tools, no limit or budget of its own. A key the policy file declares
    (same id) takes everything but ``expires_at`` from the file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1, max_length=200, description="Display name.")
    team: str | None = Field(
        default=None, pattern=TEAM_NAME_PATTERN, description="Team: it inherits the team's models and tools."
    )
    allowed_models: list[str] | None = Field(
        default=None, description="Model names or globs; unset inherits the team's, else any routed model."
    )
    rate_limit: RateLimit | None = Field(default=None, description="Limits for this key alone.")
    budget: BudgetLimits | None = Field(
        default=None, description="USD limits for this key alone (daily, weekly, monthly; alert threshold)."
    )
    tool_permissions: PermissionSpec | None = Field(
        default=None,
        description=(
            'Tools the key may use: "*", a list of servers, or {server: [tool globs] or "*"}; '
            "replaces the team's entry."
        ),
    )
    expires_at: datetime | None = Field(default=None, description="When the key stops working (UTC).")

    @field_validator("allowed_models")
    @classmethod
    def _models(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not m.strip() or len(m) > 256 for m in value):
            raise ValueError("model names and globs must be non-empty and at most 256 characters")
        return value

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def inherited(self) -> bool:
        """True when the key sets nothing of its own but possibly its expiry."""
        return self.model_dump(exclude_none=True, exclude={"expires_at"}) == {}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the resolved virtual key. Never carries the secret."""

    key_id: str
    key_name: str
    team: str | None
    source: Literal["file", "database"]
