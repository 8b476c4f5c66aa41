"""The policy document: one typed model for the whole YAML file, and its loader."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.admin import AdminSettings
from policies.budgets import BudgetsConfig
from policies.counters_settings import CountersSettings
from policies.cross_checks import cross_check
from policies.errors import ConfigError, ConfigIssue
from policies.gateway_settings import ExternalChecks, GatewaySettings
from policies.interpolation import expand_document
from policies.keys import Principal, TeamConfig, VirtualKeyConfig
from policies.mcp_section import McpSection
from policies.naming import NamingRules
from policies.permissions import Grant
from policies.providers import LlmProxySettings, ModelRoute, PricingConfig, ProviderConfig
from policies.secrets import WEAK_SECRET_CHARS, weak_secret
from policies.servers import ServerConfig
from policies.yaml_source import DocPath, LocatedDocument, format_path, parse_yaml, read_yaml_file


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
    errors, warnings = cross_check(policy)
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
    warnings += _weak_secrets(policy, env)
    return LoadedPolicy(policy, warnings, doc.source)


def _weak_secrets(policy: GatewayPolicy, env: Mapping[str, str]) -> list[str]:
    """A warning for each secret read from the environment that is short enough to guess (never the
    secret itself, nor its length)."""
    sources = [(f"virtual key {key.id!r}", key.secret_env) for key in policy.virtual_keys]
    sources += [(f"admin token {token.id!r}", token.secret_env) for token in policy.admin.tokens]
    sources.append(("gateway.session_secret_env", policy.gateway.session_secret_env))
    return [
        f"{what}: the secret in {variable} is shorter than {WEAK_SECRET_CHARS} characters and could be "
        "guessed; use a long random one (`openssl rand -base64 32`, say)"
        for what, variable in sources
        if variable and env.get(variable) and weak_secret(env[variable])
    ]


def load_policy(path: str | Path, checks: ExternalChecks | None = None) -> LoadedPolicy:
    """Read and validate a policy file; raises `ConfigError` naming the file, location and reason."""
    return validate_document(read_yaml_file(path), checks=checks)


def load_policy_text(
    text: str, source: str | None = None, checks: ExternalChecks | None = None
) -> LoadedPolicy:
    return validate_document(parse_yaml(text, source), checks=checks)
