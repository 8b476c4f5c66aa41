"""Settings for one gateway process: the validated policy plus command-line overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from policies import GatewayPolicy, LoadedPolicy, load_policy, load_policy_text


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
        overrides = {
            name: value
            for name, value in (("host", host), ("port", port), ("database_url", database_url))
            if value is not None
        }
        policy = loaded.policy
        if overrides:
            gateway = policy.gateway.model_copy(update=overrides)
            policy = policy.model_copy(update={"gateway": gateway})
        return cls(policy, loaded.source, list(loaded.warnings))

    @classmethod
    def from_file(cls, path: str | Path, **overrides: object) -> Settings:
        return cls.from_loaded(load_policy(path), **overrides)  # type: ignore[arg-type]

    @classmethod
    def from_text(cls, text: str, **overrides: object) -> Settings:
        return cls.from_loaded(load_policy_text(text, "<text>"), **overrides)  # type: ignore[arg-type]
