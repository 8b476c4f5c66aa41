"""The policy document: one typed model for the whole YAML file, and its loader."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from policies.admin import AdminSettings, admin_conflicts
from policies.budgets import BudgetsConfig
from policies.counters_settings import CountersSettings
from policies.errors import ConfigError, ConfigIssue
from policies.files import check_file_path
from policies.interpolation import expand_document
from policies.keys import Principal, TeamConfig, VirtualKeyConfig
from policies.naming import NamingRules, PrefixMode
from policies.permissions import Grant, PermissionSpec
from policies.providers import LlmProxySettings, ModelRoute, PricingConfig, ProviderConfig
from policies.servers import (
    REDACT_KEYS_DESCRIPTION,
    REDACT_PATTERNS_DESCRIPTION,
    HttpServerConfig,
    SseServerConfig,
    StdioServerConfig,
    UpstreamServerConfig,
    check_redact_keys,
    check_redact_patterns,
)
from policies.urls import is_host_name
from policies.yaml_source import DocPath, LocatedDocument, format_path, parse_yaml, read_yaml_file

ServerConfig = StdioServerConfig | HttpServerConfig | SseServerConfig


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


class ToolNaming(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    separator: str = Field(
        default="__",
        min_length=1,
        max_length=8,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Between the server name and the tool name in exposed names.",
    )
    prefix: PrefixMode = Field(
        default=PrefixMode.ALWAYS,
        description=(
            "always: every tool is <server><separator><tool>; never: bare tool names; "
            "on_conflict: bare unless two servers share a name."
        ),
    )
    client_server_name: str = Field(
        default="gateway",
        description="The name clients register the gateway under (for name-length warnings).",
    )

    def rules(self) -> NamingRules:
        return NamingRules(self.separator, self.prefix, self.client_server_name)


class McpSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    servers: list[UpstreamServerConfig] = Field(
        default_factory=list,
        description=(
            "Upstream MCP servers: stdio children (`command`), streamable-HTTP servers (`url`) or, with "
            "`transport: sse`, servers on the older HTTP+SSE transport (`url` at their event stream)."
        ),
    )
    virtual_key_permissions: dict[str, PermissionSpec] = Field(
        default_factory=dict,
        description=(
            'Per key id: "*" (everything of every server), a list of servers (everything of each), or a map '
            'per server of "*" (everything of it), a list of tool globs (those tools only: no resources or '
            'prompts), or {tools, resources, prompts} each "*" or a list of globs (resource globs match the '
            "server's own URIs; a kind left out grants none of it); replaces the team's entry."
        ),
    )
    team_permissions: dict[str, PermissionSpec] = Field(
        default_factory=dict,
        description="Per team, in the same shapes: what its keys see unless they have their own entry.",
    )
    tool_naming: ToolNaming = Field(
        default_factory=ToolNaming, description="How tools are named for clients (decided once for everyone)."
    )
    call_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Per tools/call (and resources/read, prompts/get, completion/complete) timeout for servers that "
            "set none."
        ),
    )
    list_page_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description=(
            "Most items in one page of tools/list, resources/list, resources/templates/list or prompts/list; "
            "longer lists carry a nextCursor."
        ),
    )
    instructions: str | None = Field(default=None, description="Sent to clients as the server instructions.")
    anonymous_key: str | None = Field(
        default=None,
        description=(
            "Off by default. The id of a key in virtual_keys: requests to /mcp that carry no credentials at "
            "all are served as that key (for local tools that cannot send a header, such as the conformance "
            "runner). A request with wrong credentials is still refused; the model API and the admin API "
            "never accept anonymous requests. Anyone who can reach /mcp gets that key's tools."
        ),
    )
    client_request_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description=(
            "How long an upstream's request to the client (elicitation, sampling, roots) may wait for the "
            "client's answer; for a 2026-07-28 client, how long the upstream call is kept waiting for the "
            "retry that carries the answers. Past it the upstream gets an error (and the call is "
            "cancelled). The call's own timeout still bounds the whole call."
        ),
    )
    startup_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description=(
            "At start, how long the gateway waits for its upstream servers to list their tools before it "
            "accepts requests (0: not at all). Until a server has answered once its tools are unknown, so a "
            "call to one would be answered 'Unknown tool'; a server still not up after this long comes in "
            "later by itself."
        ),
    )


class GatewayPolicy(BaseModel):
    """Everything a policy file can say. Unknown fields anywhere are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateway: GatewaySettings = Field(
        default_factory=GatewaySettings, description="The gateway process: address, database, limits."
    )
    teams: list[TeamConfig] = Field(
        default_factory=list,
        description="Teams; once this list exists, every team named elsewhere must be one of its entries.",
    )
    virtual_keys: list[VirtualKeyConfig] = Field(
        default_factory=list, description="Keys declared in the file (more can be created with the CLI)."
    )
    mcp: McpSection = Field(default_factory=McpSection, description="The /mcp endpoint and its upstreams.")
    providers: list[ProviderConfig] = Field(default_factory=list, description="Upstream model APIs.")
    routes: list[ModelRoute] = Field(
        default_factory=list, description="Which provider serves a requested model; exact names before globs."
    )
    pricing: PricingConfig = Field(
        default_factory=PricingConfig, description="Model prices for the spend ledger and budgets."
    )
    budgets: BudgetsConfig = Field(
        default_factory=BudgetsConfig, description="Spend limits in USD per org, team, key and provider."
    )
    llm_proxy: LlmProxySettings = Field(
        default_factory=LlmProxySettings, description="The model proxy's own settings."
    )
    counters: CountersSettings = Field(
        default_factory=CountersSettings,
        description="Where rate limit and budget counters live: this process (memory) or a shared Redis.",
    )
    admin: AdminSettings = Field(
        default_factory=AdminSettings,
        description="Admin and auditor tokens (operational detail today; an admin API later).",
    )

    # -- lookups -------------------------------------------------------------------------

    def key(self, key_id: str) -> VirtualKeyConfig | None:
        return next((k for k in self.virtual_keys if k.id == key_id), None)

    def team(self, name: str | None) -> TeamConfig | None:
        if name is None:
            return None
        return next((t for t in self.teams if t.name == name), None)

    def server(self, name: str) -> ServerConfig | None:
        return next((s for s in self.mcp.servers if s.name == name), None)

    def provider(self, name: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.name == name), None)

    # -- decisions -----------------------------------------------------------------------

    def tool_grant(self, principal: Principal) -> Grant:
        """What a key may use (tools, resources, prompts): its own permission entry wins; otherwise it
        inherits its team's; otherwise nothing."""
        spec = self.mcp.virtual_key_permissions.get(principal.key_id)
        if spec is not None:
            return Grant.from_spec(spec, f"key:{principal.key_id}")
        if principal.team is not None:
            team_spec = self.mcp.team_permissions.get(principal.team)
            if team_spec is not None:
                return Grant.from_spec(team_spec, f"team:{principal.team}")
        return Grant.from_spec(None, "none")

    def allowed_models(self, principal: Principal) -> list[str] | None:
        """Model globs for a key (None: any routed model)."""
        key = self.key(principal.key_id)
        if key is not None and key.allowed_models is not None:
            return list(key.allowed_models)
        team = self.team(principal.team)
        if team is not None and team.allowed_models is not None:
            return list(team.allowed_models)
        return None

    def naming_rules(self) -> NamingRules:
        return self.mcp.tool_naming.rules()

    def call_timeout(self, server: ServerConfig) -> float:
        return server.timeout_seconds or self.mcp.call_timeout_seconds


def _duplicates(values: list[str]) -> list[str]:
    return sorted(name for name, count in Counter(values).items() if count > 1)


def _cross_check(policy: GatewayPolicy) -> tuple[list[tuple[DocPath, str]], list[str]]:
    """References between sections; returns (errors, warnings)."""
    errors: list[tuple[DocPath, str]] = []
    warnings: list[str] = []
    team_names = {t.name for t in policy.teams}
    key_ids = {k.id for k in policy.virtual_keys}
    server_names = {s.name for s in policy.mcp.servers}
    provider_names = {p.name for p in policy.providers}
    separator = policy.mcp.tool_naming.separator

    for dup in _duplicates([t.name for t in policy.teams]):
        errors.append((("teams",), f"team {dup!r} is defined more than once"))
    for dup in _duplicates([k.id for k in policy.virtual_keys]):
        errors.append((("virtual_keys",), f"virtual key {dup!r} is defined more than once"))
    for dup in _duplicates([s.name for s in policy.mcp.servers]):
        errors.append((("mcp", "servers"), f"server {dup!r} is defined more than once"))
    for dup in _duplicates([p.name for p in policy.providers]):
        errors.append((("providers",), f"provider {dup!r} is defined more than once"))
    digests = [k.secret_sha256 for k in policy.virtual_keys if k.secret_sha256]
    if _duplicates(digests):
        errors.append((("virtual_keys",), "two virtual keys share the same secret_sha256"))

    # Teams may be implied (the common seed shape has budgets per team but no team list);
    # once a `teams` list exists, every reference must name one of its entries.
    teams_declared = bool(policy.teams)

    def team_ref(path: DocPath, name: str) -> None:
        if name in team_names:
            return
        if teams_declared:
            errors.append((path, f"team {name!r} is not defined under teams"))
        else:
            warnings.append(
                f"{format_path(path)}: team {name!r} is implied (no teams list); check its spelling"
            )

    for i, key in enumerate(policy.virtual_keys):
        if key.team is not None:
            team_ref(("virtual_keys", i, "team"), key.team)
        if key.provider_config is not None and key.provider_config not in provider_names and policy.providers:
            errors.append(
                (("virtual_keys", i, "provider_config"), f"provider {key.provider_config!r} is not defined")
            )

    for i, server in enumerate(policy.mcp.servers):
        if separator in server.name and policy.mcp.tool_naming.prefix is not PrefixMode.NEVER:
            errors.append(
                (
                    ("mcp", "servers", i, "name"),
                    f"server name {server.name!r} contains the tool name separator {separator!r}",
                )
            )

    def check_spec(path: DocPath, spec: PermissionSpec) -> None:
        if spec == "*":
            return
        names = spec if isinstance(spec, list) else list(spec)
        for name in names:
            if name != "*" and name not in server_names:
                errors.append((path, f"server {name!r} is not defined under mcp.servers"))

    for key_id, spec in policy.mcp.virtual_key_permissions.items():
        check_spec(("mcp", "virtual_key_permissions", key_id), spec)
        if key_id not in key_ids:
            warnings.append(
                f"mcp.virtual_key_permissions.{key_id}: no virtual_keys entry has this id; "
                "it applies to a key of that id created with `mcp-gateway keys create`"
            )
    anonymous = policy.mcp.anonymous_key
    if anonymous is not None:
        if anonymous not in key_ids:
            errors.append(
                (("mcp", "anonymous_key"), f"virtual key {anonymous!r} is not defined under virtual_keys")
            )
        else:
            warnings.append(
                "mcp.anonymous_key: ANONYMOUS ACCESS IS ON: requests to /mcp without credentials are "
                f"served as key {anonymous!r}; anyone who can reach the gateway can use that key's tools"
            )
    for team_name, spec in policy.mcp.team_permissions.items():
        check_spec(("mcp", "team_permissions", team_name), spec)
        team_ref(("mcp", "team_permissions", team_name), team_name)

    if policy.mcp.tool_naming.prefix is PrefixMode.NEVER:
        for noun in ("tool", "prompt"):
            owners: dict[str, list[str]] = {}
            for server in policy.mcp.servers:
                ceiling = server.allowed_tools if noun == "tool" else server.allowed_prompts
                for name in ceiling or []:
                    if not any(ch in name for ch in "*?["):
                        owners.setdefault(name, []).append(server.name)
            for name, servers in sorted(owners.items()):
                if len(servers) > 1:
                    errors.append(
                        (
                            ("mcp", "tool_naming", "prefix"),
                            f"with prefix 'never', {noun} {name!r} is exposed by servers "
                            f"{', '.join(servers)}",
                        )
                    )

    for i, route in enumerate(policy.routes):
        for j, target in enumerate(route.targets()):
            if target.provider not in provider_names:
                path: DocPath = ("routes", i, "provider") if j == 0 else ("routes", i, "fallbacks", j - 1)
                errors.append((path, f"provider {target.provider!r} is not defined under providers"))

    exact_routes: dict[str, int] = {}
    for i, route in enumerate(policy.routes):
        if not any(ch in route.match for ch in "*?["):
            if route.match in exact_routes:
                warnings.append(
                    f"routes[{i}]: model {route.match!r} is already routed by "
                    f"routes[{exact_routes[route.match]}]; this route is never used"
                )
            exact_routes.setdefault(route.match, i)

    for i, team_budget in enumerate(policy.budgets.teams):
        team_ref(("budgets", "teams", i, "name"), team_budget.name)
    for i, key_budget in enumerate(policy.budgets.keys):
        if key_budget.id not in key_ids:
            warnings.append(
                f"budgets.keys[{i}]: no virtual_keys entry has id {key_budget.id!r}; "
                "it applies to a key of that id created with `mcp-gateway keys create`"
            )
    for i, provider_budget in enumerate(policy.budgets.providers):
        if provider_budget.name not in provider_names:
            errors.append(
                (("budgets", "providers", i, "name"), f"provider {provider_budget.name!r} is not defined")
            )
    errors.extend(admin_conflicts(policy.admin, policy.virtual_keys))
    return errors, warnings


def _loc_to_path(loc: tuple[Any, ...], doc: LocatedDocument) -> DocPath:
    """Pydantic locations include union tags (``stdio``, ``http``, ``sse``); keep the parts in the file."""
    path: list[str | int] = []
    for part in loc:
        candidate = (*path, part)
        if (
            candidate in doc.lines
            or isinstance(part, int)
            or (
                isinstance(part, str)
                and part not in {"stdio", "http", "sse"}
                and not part.startswith(("function-", "list[", "shape-"))
            )
        ):
            path.append(part)
    return tuple(path)


class LoadedPolicy:
    """A validated policy plus the warnings an admin should see at start-up."""

    def __init__(self, policy: GatewayPolicy, warnings: list[str], source: str | None) -> None:
        self.policy = policy
        self.warnings = warnings
        self.source = source


@dataclass(frozen=True)
class ExternalChecks:
    """Validations that need libraries `policies` must not import; the composition root supplies them,
    so that ``check`` and ``serve`` run the same ones."""

    database_url: Callable[[str], str] | None = None
    """Returns the URL if the gateway can open it, else raises `ValueError` saying why."""


def validate_document(
    doc: LocatedDocument, environ: Mapping[str, str] | None = None, checks: ExternalChecks | None = None
) -> LoadedPolicy:
    """Expand ``${VAR}`` references (from ``environ``, default the process environment), then validate."""
    if not isinstance(doc.data, dict):
        raise ConfigError(
            [ConfigIssue("", "the policy must be a YAML mapping at the top level", 1)], doc.source
        )
    doc = expand_document(doc, environ)
    try:
        policy = GatewayPolicy.model_validate(doc.data, context={"checks": checks})
    except ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False):
            path = _loc_to_path(tuple(err["loc"]), doc)
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = f"unknown field {path[-1]!r}" if path else "unknown field"
            elif err["type"] == "value_error":
                message = message.removeprefix("Value error, ")
            issues.append(ConfigIssue(format_path(path), message, doc.line_for(path)))
        raise ConfigError(issues, doc.source) from None
    errors, warnings = _cross_check(policy)
    if errors:
        raise ConfigError(
            [ConfigIssue(format_path(path), message, doc.line_for(path)) for path, message in errors],
            doc.source,
        )
    env = os.environ if environ is None else environ
    secret_env = policy.gateway.session_secret_env
    if policy.counters.backend == "redis" and secret_env is None:
        warnings.append(
            "counters.backend is 'redis' (several replicas or workers) but gateway.session_secret_env is "
            "not set: a 2025-11-25 session works only on the process that opened it"
        )
    elif secret_env is not None and not env.get(secret_env):
        warnings.append(
            f"gateway.session_secret_env: environment variable {secret_env} is not set; sessions are "
            "signed with a secret of each process (other replicas cannot serve them)"
        )
    for key in policy.virtual_keys:
        if key.secret_env and key.secret_env not in env:
            warnings.append(
                f"virtual key {key.id!r}: environment variable {key.secret_env} is not set; "
                "the key only works with a secret from `mcp-gateway keys create`"
            )
    return LoadedPolicy(policy, warnings, doc.source)


def load_policy(path: str | Path, checks: ExternalChecks | None = None) -> LoadedPolicy:
    """Read and validate a policy file; raises `ConfigError` naming the file, location and reason."""
    return validate_document(read_yaml_file(path), checks=checks)


def load_policy_text(
    text: str, source: str | None = None, checks: ExternalChecks | None = None
) -> LoadedPolicy:
    return validate_document(parse_yaml(text, source), checks=checks)
