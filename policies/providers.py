"""Model providers, model routing and price overrides as written in a policy file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROVIDER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


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
    timeout_seconds: float = Field(default=600.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

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


class ModelRoute(BaseModel):
    """Requested model (exact alias or glob) -> provider and upstream model, with ordered fallbacks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Annotated[str, Field(min_length=1)]
    provider: str
    model: str | None = Field(
        default=None, description="Upstream model name; absent keeps the requested one."
    )
    fallbacks: list[RouteTarget] = Field(default_factory=list)

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
