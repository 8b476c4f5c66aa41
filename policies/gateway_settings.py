"""The `gateway` section of a policy file: how the process runs (listen address, database, limits),
its audit log and its metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from policies.files import check_file_path
from policies.servers import (
    REDACT_KEYS_DESCRIPTION,
    REDACT_PATTERNS_DESCRIPTION,
    check_redact_keys,
    check_redact_patterns,
)
from policies.urls import is_host_name


@dataclass(frozen=True)
class ExternalChecks:
    """Validations that need libraries `policies` must not import; the composition root supplies them,
    so that ``check`` and ``serve`` run the same ones."""

    database_url: Callable[[str], str] | None = None
    """Returns the URL if the gateway can open it, else raises `ValueError` saying why."""


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_arguments_bytes: int = Field(
        default=65_536,
        ge=256,
        description="Arguments kept per audited call; longer ones are cut and flagged.",
    )
    max_result_bytes: int = Field(
        default=65_536, ge=256, description="Result kept per audited call; longer ones are cut and flagged."
    )
    flush_interval_ms: int = Field(
        default=50, ge=1, le=60_000, description="How often queued audit rows are written (ms)."
    )
    batch_size: int = Field(default=500, ge=1, description="Most audit rows written in one batch.")
    fallback_file: str = Field(
        default="data/audit-fallback.jsonl",
        description="Where records go if the database refuses them, so none is lost.",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Days of tool_calls rows kept; older ones are deleted by the daily prune (and `mcp-gateway "
            "audit prune`). Absent (the default): kept forever."
        ),
    )
    redact_keys: list[str] = Field(
        default_factory=list, description=REDACT_KEYS_DESCRIPTION + " For every server's calls."
    )
    redact_patterns: list[str] = Field(
        default_factory=list, description=REDACT_PATTERNS_DESCRIPTION + " For every server's calls."
    )

    @field_validator("fallback_file")
    @classmethod
    def _fallback_file(cls, value: str) -> str:
        return check_file_path(value, "fallback_file")

    @field_validator("redact_keys")
    @classmethod
    def _redact_keys(cls, value: list[str]) -> list[str]:
        return check_redact_keys(value)

    @field_validator("redact_patterns")
    @classmethod
    def _redact_patterns(cls, value: list[str]) -> list[str]:
        return check_redact_patterns(value)


class MetricsSettings(BaseModel):
    """GET /metrics (Prometheus text format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description=(
            "Serve GET /metrics and count calls and model requests for it. Who may read it follows "
            "gateway.health_details: an admin token (either role), or also a peer on this host (loopback)."
        ),
    )
    max_series: int = Field(
        default=10_000,
        ge=10,
        le=1_000_000,
        description=(
            "Most label sets one metric keeps (e.g. key x team x server x tool for tool calls). Further "
            "label sets are counted in one series whose labels are all '<overflow>' (outcome kept), and "
            "mcp_gateway_metric_overflow_total says how often that happened."
        ),
    )


class GatewaySettings(BaseModel):
    """How the gateway process runs (listen address, database, limits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        default="127.0.0.1",
        description="Address to listen on (an IP address or host name); 0.0.0.0 for every interface.",
    )
    port: int = Field(default=8080, ge=0, le=65_535, description="TCP port to listen on.")
    database_url: str = Field(
        default="sqlite:///data/gateway.db",
        description=(
            "SQLAlchemy URL of the database for the audit log, keys and spend ledger: sqlite:///PATH "
            "(relative to the working directory) or postgresql://... (psycopg 3)."
        ),
    )
    row_writer: Literal["process", "thread"] = Field(
        default="process",
        description=(
            "Where the audit, ledger and alert rows are cleaned and written: process (a writer process "
            "beside the gateway, so that work never holds up requests: p99 latency) or thread (a thread "
            "of the gateway's own process; for platforms that forbid child processes). A database only "
            "this process can open (in-memory SQLite) is always written from a thread."
        ),
    )
    database_migrations: Literal["auto", "manual"] = Field(
        default="auto",
        description=(
            "auto: `serve` brings the database schema up to this release's (Alembic migrations) when it "
            "starts, under a database lock, so replicas starting together are safe; manual: `serve` "
            "refuses a schema that is not this release's, and `mcp-gateway db upgrade` migrates it (for "
            "deployments that migrate as a step of their own)."
        ),
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest /mcp request body; larger ones get 413."
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long calls in flight may take to finish."
    )
    key_refresh_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "How often every key is re-read from the database in any case (s). Changes made with "
            "`mcp-gateway keys` are seen sooner: each bumps a counter that gateways read every second "
            "(or every key_refresh_seconds, if shorter)."
        ),
    )
    allowed_hosts: list[str] | None = Field(
        default=None,
        description=(
            "Host header values accepted on every route (DNS-rebinding protection); others get 421. Default: "
            "localhost names when listening on loopback, anything otherwise. '*' accepts any."
        ),
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Browser origins accepted on every route besides localhost ones; others (and 'Origin: null') "
            "get 403. Requests without Origin pass."
        ),
    )
    health_details: Literal["loopback", "token"] = Field(
        default="loopback",
        description=(
            "Who sees the /readyz detail (upstreams, PIDs, stderr, audit state): 'loopback' lets a peer on "
            "this host and any admin token holder see it; 'token' requires an admin token. Others get only "
            "the status. Behind a reverse proxy on the same host every peer is loopback: use 'token'."
        ),
    )
    session_idle_seconds: float = Field(
        default=3600.0, gt=0, description="A 2025-11-25 client session unused this long is closed."
    )
    max_json_depth: int = Field(
        default=64,
        ge=1,
        le=200,
        description=(
            "Deepest nesting of JSON objects and arrays accepted in a request body, on /mcp and the model "
            "API; deeper bodies are refused (JSON-RPC -32600 or HTTP 400) before anything reads them. At "
            "most 200: the gateway re-encodes what it stores and forwards, and its encoder stops at 254."
        ),
    )
    max_sessions: int = Field(
        default=10_000,
        ge=1,
        description=(
            "Open 2025-11-25 sessions (Mcp-Session-Id) in this process, all keys together. At the cap, "
            "after idle sessions expire, a new initialize is refused with HTTP 503; no other key's "
            "session is closed to make room."
        ),
    )
    max_sessions_per_key: int = Field(
        default=256,
        ge=1,
        description=(
            "Open sessions one virtual key may hold. A key's initialize beyond it closes that key's own "
            "least recently used session (one without an open GET stream if possible), never another key's."
        ),
    )
    session_secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=128,
        description=(
            "Environment variable holding a secret every replica (and worker process) shares: 2025-11-25 "
            "session ids are signed with it, so any replica serves any session. Unset: a random secret of "
            "each process, and a session works only on the process that opened it. `serve --workers N` "
            "needs it."
        ),
    )
    max_initialize_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description=(
            "Largest initialize request body accepted (the general limit is max_body_bytes); a larger one "
            "is refused with HTTP 413 and a JSON-RPC error. Sessions keep only the client's name, version, "
            "protocol version and capability flags, never the payload."
        ),
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Time from a request's first byte until its headers are complete; a slower client is answered "
            "408 and disconnected. Once the headers are in, long responses (streams) are not cut."
        ),
    )
    keep_alive_seconds: float = Field(
        default=75.0,
        gt=0,
        description=(
            "How long a client connection may sit without a request: after it opens and after each "
            "response. Keep it above the idle timeout of a load balancer in front (60 s on most)."
        ),
    )
    max_connections: int = Field(
        default=2000,
        ge=1,
        description=(
            "Client connections open at once. Over it the longest idle kept-alive connection is closed to "
            "make room; if none is idle, the new connection's request gets HTTP 503 with Retry-After."
        ),
    )
    max_requests_in_flight: int = Field(
        default=1000,
        ge=1,
        description=(
            "Requests being served at once, long-lived streams included; further requests get HTTP 503 "
            "with Retry-After and a JSON body saying why."
        ),
    )
    watch_policy_file: bool = Field(
        default=False,
        description=(
            "Reload the policy file when it changes (checked about every second; a change is applied once "
            "the file has stopped changing for half a second). Without it, reload with SIGHUP. A file with "
            "errors is refused and the policy in force stays."
        ),
    )
    audit: AuditSettings = Field(default_factory=AuditSettings, description="The tool-call audit log.")
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="Prometheus metrics at GET /metrics."
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not is_host_name(value):
            raise ValueError("host must be an IP address or a host name, e.g. 127.0.0.1 or 0.0.0.0")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str, info: ValidationInfo) -> str:
        checks = (info.context or {}).get("checks")
        if isinstance(checks, ExternalChecks) and checks.database_url is not None:
            return checks.database_url(value)
        return value
