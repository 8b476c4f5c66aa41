"""Model providers, model routing, price overrides and the model proxy's own settings.

``base_url``, header values and a route's ``provider``/``model`` may use
``${VAR}`` or ``${VAR:-default}``. Routes are resolved when the file is loaded
(so a reference to an unknown provider is still an error naming its line);
``base_url`` and headers when the gateway starts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from .servers import MissingEnvironmentVariable, interpolate

PROVIDER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _resolve_env(value: str | None) -> str | None:
    if value is None or "${" not in value:
        return value
    try:
        return interpolate(value)
    except MissingEnvironmentVariable as exc:
        raise ValueError(f"{exc} (write ${{{exc.name}:-default}} to give a default)") from None


class WeightedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    weight: float = Field(default=1.0, gt=0)


class ProviderConfig(BaseModel):
    """An upstream model API. Its own key comes from the environment and never leaves the gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=PROVIDER_NAME_PATTERN)]
    kind: Literal["anthropic", "openai-compatible"]
    base_url: Annotated[str, Field(min_length=1)]
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    api_keys: list[WeightedKey] | None = Field(
        default=None, description="Several provider keys, chosen by weight per request."
    )
    timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        validation_alias=AliasChoices("timeout_seconds", "timeout"),
        description="Longest wait for the provider's next bytes (first byte, or between stream events).",
    )
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent upstream.")
    models: list[str] = Field(
        default_factory=list, description="Model names this provider serves, listed by GET /v1/models."
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "${")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_key_source(self) -> ProviderConfig:
        if self.api_key_env and self.api_keys:
            raise ValueError("give either api_key_env or api_keys, not both")
        return self

    def key_envs(self) -> list[WeightedKey]:
        if self.api_keys:
            return list(self.api_keys)
        if self.api_key_env:
            return [WeightedKey(env=self.api_key_env)]
        return []


class RouteTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str | None = Field(
        default=None, description="Upstream model name; absent keeps the requested one."
    )

    @field_validator("provider", "model")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return _resolve_env(value)


class ModelRoute(BaseModel):
    """Requested model (exact alias or glob) -> provider and upstream model, with ordered fallbacks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Annotated[str, Field(min_length=1)]
    provider: str
    model: str | None = Field(
        default=None, description="Upstream model name; absent keeps the requested one."
    )
    fallbacks: list[RouteTarget] = Field(
        default_factory=list,
        description="Tried in order on connection errors, 5xx and 429, before the client sees a byte.",
    )

    @field_validator("provider", "model")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return _resolve_env(value)

    def targets(self) -> list[RouteTarget]:
        return [RouteTarget(provider=self.provider, model=self.model), *self.fallbacks]


class ModelPrice(BaseModel):
    """USD per million tokens; overrides the genai-prices data for one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_read_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)


class PricingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unknown_model: Literal["block", "zero"] = Field(
        default="block",
        description="A model with no known price: refuse it (block) or count its cost as zero.",
    )
    models: dict[str, ModelPrice] = Field(default_factory=dict)


class LlmProxySettings(BaseModel):
    """The model proxy's own knobs (``llm_proxy:`` in the policy file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest request body accepted (Anthropic's is 32 MB)."
    )
    ledger_flush_interval_ms: int = Field(default=50, ge=1, le=60_000)
    ledger_batch_size: int = Field(default=500, ge=1)
    ledger_fallback_file: str = Field(
        default="data/ledger-fallback.jsonl",
        description="Where ledger rows go if the database refuses them; replayed at the next start.",
    )
    alert_webhook_timeout_seconds: float = Field(default=5.0, gt=0)
