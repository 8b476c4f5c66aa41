"""Model routing and model permissions: requested model -> ordered provider targets.

Routes are matched exact name first (aliases), then globs in file order. A model
no route matches goes to the key's ``provider_config`` (the seed's per-key
default provider) under its own name. A key may use a model when its
``allowed_models`` globs (else its team's; else anything routed) match the name
the client asked for or the name the route sends upstream.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from policies.config import GatewayPolicy
from policies.keys import Principal
from policies.providers import ModelRoute

ProviderKind = Literal["anthropic", "openai-compatible"]
_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in pattern)


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    kind: ProviderKind
    model: str
    """The model name sent upstream."""


@dataclass(frozen=True, slots=True)
class RouteResult:
    targets: tuple[Target, ...]
    """In order of preference; later ones are fallbacks."""
    route: str | None
    """The ``match`` of the route used, or None for a key's default provider."""


class ModelRouter:
    def __init__(
        self, policy: GatewayPolicy, key_models: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        """``key_models``: ``allowed_models`` of keys kept outside the file (database keys'), by key id;
        they win over the team's, as a file key's own list does."""
        self.policy = policy
        self._key_models = dict(key_models or {})
        self._kinds: dict[str, ProviderKind] = {p.name: p.kind for p in policy.providers}
        self._exact: dict[str, ModelRoute] = {}
        self._globs: list[ModelRoute] = []
        for route in policy.routes:
            if is_glob(route.match):
                self._globs.append(route)
            else:
                self._exact.setdefault(route.match, route)
        self._allowed: dict[tuple[str, str | None], tuple[str, ...] | None] = {}

    def route(self, model: str, principal: Principal | None = None) -> RouteResult | None:
        """Where ``model`` goes, or None if nothing routes it."""
        route = self._exact.get(model)
        if route is None:
            route = next((r for r in self._globs if fnmatch.fnmatchcase(model, r.match)), None)
        if route is not None:
            targets = tuple(
                Target(t.provider, self._kinds[t.provider], t.model or model)
                for t in route.targets()
                if t.provider in self._kinds
            )
            return RouteResult(targets, route.match)
        if principal is not None:
            key = self.policy.key(principal.key_id)
            if key is not None and key.provider_config in self._kinds:
                provider = key.provider_config
                return RouteResult((Target(provider, self._kinds[provider], model),), None)
        return None

    def allowed_patterns(self, principal: Principal) -> tuple[str, ...] | None:
        cache_key = (principal.key_id, principal.team)
        if cache_key not in self._allowed:
            own = self._key_models.get(principal.key_id)
            patterns = own if own is not None else self.policy.allowed_models(principal)
            self._allowed[cache_key] = None if patterns is None else tuple(patterns)
        return self._allowed[cache_key]

    def allows(self, principal: Principal, requested: str, served: str | None = None) -> bool:
        patterns = self.allowed_patterns(principal)
        if patterns is None:
            return True
        names = (requested,) if served is None or served == requested else (requested, served)
        return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)

    def listed_models(self, principal: Principal) -> list[tuple[str, str]]:
        """(model, provider) pairs a key may use that can be named without a glob, for ``/v1/models``.

        Route aliases, the providers' declared ``models`` and the exact entries of the key's
        ``allowed_models``; each kept only if it routes and is allowed.
        """
        candidates: list[str] = [r.match for r in self.policy.routes if not is_glob(r.match)]
        for provider in self.policy.providers:
            candidates.extend(provider.models)
        candidates.extend(p for p in self.allowed_patterns(principal) or () if not is_glob(p))
        listed: dict[str, str] = {}
        for model in candidates:
            if model in listed:
                continue
            result = self.route(model, principal)
            if result is None or not result.targets:
                continue
            if self.allows(principal, model, result.targets[0].model):
                listed[model] = result.targets[0].provider
        return list(listed.items())
