"""Settings for one gateway process: the validated policy plus command-line overrides.

The policy file is always loaded through `load_policy_file`/`load_policy_source`, which hand the
policy loader the checks that need libraries `policies` may not import (the database URL), so
``check`` and ``serve`` validate exactly the same way; command-line overrides are validated too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway_common.database_url import check_database_url
from policies import ConfigError, ConfigIssue, GatewayPolicy, LoadedPolicy, load_policy, load_policy_text
from policies.gateway_settings import ExternalChecks, GatewaySettings

CHECKS = ExternalChecks(database_url=check_database_url)


def load_policy_file(path: str | Path) -> LoadedPolicy:
    return load_policy(path, checks=CHECKS)


def load_policy_source(text: str, source: str | None = None) -> LoadedPolicy:
    return load_policy_text(text, source, checks=CHECKS)


@dataclass(frozen=True)
class Settings:
    policy: GatewayPolicy
    source: str | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_loaded(
        cls,
        loaded: LoadedPolicy,
        *,
        host: str | None = None,
        port: int | None = None,
        database_url: str | None = None,
    ) -> Settings:
        overrides: dict[str, Any] = {
            name: value
            for name, value in (("host", host), ("port", port), ("database_url", database_url))
            if value is not None
        }
        policy = loaded.policy
        if overrides:
            merged = {**policy.gateway.model_dump(), **overrides}
            try:
                gateway = GatewaySettings.model_validate(merged, context={"checks": CHECKS})
            except ValidationError as exc:
                issues = [
                    ConfigIssue(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}", e["msg"])
                    for e in exc.errors(include_url=False)
                ]
                raise ConfigError(issues, "command line") from None
            policy = policy.model_copy(update={"gateway": gateway})
        return cls(policy, loaded.source, list(loaded.warnings))

    @classmethod
    def from_text(cls, text: str, **overrides: Any) -> Settings:
        return cls.from_loaded(load_policy_source(text, "<text>"), **overrides)
