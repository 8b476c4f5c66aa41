"""Model providers, model routing, price overrides and the model proxy's own settings.

Like every string in the policy file, ``base_url``, header values and a route's
``provider``/``model`` may use ``${VAR}`` or ``${VAR:-default}`` (see
`policies.interpolation`); they are expanded when the file is loaded, so a
reference to an unknown provider is still an error naming its line.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.files import check_file_path
from policies.http_client import (
    HTTP2_DESCRIPTION,
    HTTP_CLIENT_DESCRIPTION,
    TLS_DESCRIPTION,
    HttpClientKind,
    TlsFiles,
    check_client_fields,
    check_headers,
)
from policies.urls import check_http_url

PROVIDER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class WeightedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(pattern=ENV_NAME_PATTERN, description="Environment variable holding one provider key.")
    weight: float = Field(default=1.0, gt=0, description="Relative share of requests sent with this key.")


class ProviderConfig(BaseModel):
    """An upstream model API. Its own key comes from the environment and never leaves the gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=PROVIDER_NAME_PATTERN, description="Unique provider name, used by routes and budgets."
    )
    kind: Literal["anthropic", "openai-compatible"] = Field(
        description="API shape: the Anthropic Messages API, or OpenAI chat completions."
    )
    base_url: str = Field(
        min_length=1,
        description="http(s) URL of the API; OpenAI-compatible base URLs end in /v1.",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=ENV_NAME_PATTERN,
        description=(
            "Environment variable holding the provider's key (the gateway's own, never a virtual key)."
        ),
    )
    api_keys: list[WeightedKey] | None = Field(
        default=None, description="Several provider keys, chosen by weight per request."
    )
    timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        validation_alias=AliasChoices("timeout_seconds", "timeout"),
        description="Longest wait for the provider's next bytes (first byte, or between stream events).",
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest DNS, TCP and TLS set-up for a new connection."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent upstream.")
    models: list[str] = Field(
        default_factory=list, description="Model names this provider serves, listed by GET /v1/models."
    )
    http_client: HttpClientKind = Field(default="auto", description=HTTP_CLIENT_DESCRIPTION)
    http2: bool = Field(default=False, description=HTTP2_DESCRIPTION)
    tls: TlsFiles | None = Field(default=None, description=TLS_DESCRIPTION)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "base_url").rstrip("/")

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        check_headers(value)
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> ProviderConfig:
        if self.api_key_env and self.api_keys:
            raise ValueError("give either api_key_env or api_keys, not both")
        check_client_fields(self.base_url, self.http_client, self.http2, self.tls)
        return self

    def key_envs(self) -> list[WeightedKey]:
        if self.api_keys:
            return list(self.api_keys)
        if self.api_key_env:
            return [WeightedKey(env=self.api_key_env)]
        return []


class RouteTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(description="Provider to try (a name under providers).")
    model: str | None = Field(
        default=None, description="Upstream model name; absent keeps the requested one."
    )


class ModelRoute(BaseModel):
    """Requested model (exact alias or glob) -> provider and upstream model, with ordered fallbacks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(
        min_length=1,
        description="Requested model name: an exact name (alias, tried first) or a glob such as claude-*.",
    )
    provider: str = Field(description="Provider that serves it (a name under providers).")
    model: str | None = Field(
        default=None, description="Upstream model name; absent keeps the requested one."
    )
    fallbacks: list[RouteTarget] = Field(
        default_factory=list,
        description="Tried in order on connection errors, 5xx and 429, before the client sees a byte.",
    )

    def targets(self) -> list[RouteTarget]:
        return [RouteTarget(provider=self.provider, model=self.model), *self.fallbacks]


class ModelPrice(BaseModel):
    """USD per million tokens; overrides the genai-prices data for one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0, description="USD per million uncached input tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens.")
    cache_read_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cache-read tokens; default: the input price."
    )
    cache_write_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cache-write tokens; default: the input price."
    )


class PricingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unknown_model: Literal["block", "zero"] = Field(
        default="block",
        description="A model with no known price: refuse it (block) or count its cost as zero.",
    )
    models: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Prices by model name or glob; they override the genai-prices data.",
    )


class LlmProxySettings(BaseModel):
    """The model proxy's own knobs (``llm_proxy:`` in the policy file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest request body accepted (Anthropic's is 32 MB)."
    )
    ledger_flush_interval_ms: int = Field(
        default=50, ge=1, le=60_000, description="How often queued ledger rows are written (ms)."
    )
    ledger_batch_size: int = Field(default=500, ge=1, description="Most ledger rows written in one batch.")
    ledger_fallback_file: str = Field(
        default="data/ledger-fallback.jsonl",
        description="Where ledger rows go if the database refuses them; replayed at the next start.",
    )
    ledger_retention_days: int | None = Field(
        default=None,
        ge=32,
        description=(
            "Days of model_requests rows kept; older ones are deleted by the daily prune (and `mcp-gateway "
            "audit prune`). Absent (the default): kept forever. At least 32: budgets rebuild the current "
            "month's spend from these rows when the gateway starts."
        ),
    )
    alert_retention_days: int | None = Field(
        default=None,
        ge=32,
        description=(
            "Days of budget_alerts rows kept (absent: kept forever). At least 32: the gateway reads the "
            "current month's alerts at start so it does not send them again."
        ),
    )
    alert_webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Longest wait for budgets.alert_webhook to answer; then it is dropped."
    )

    @field_validator("ledger_fallback_file")
    @classmethod
    def _fallback_file(cls, value: str) -> str:
        return check_file_path(value, "ledger_fallback_file")
