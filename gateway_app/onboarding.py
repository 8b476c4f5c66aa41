"""What one developer needs to use a key with Claude Code: the ``claude mcp add`` line and the
``env`` block of a Claude Code ``settings.json``, with a model the key may use.

A key restricted to some models must name one of them, or Claude Code asks for its own default model
and gets a 403. The model is chosen from what the key may use: its exact ``allowed_models`` names
first (those that route to an Anthropic-compatible provider), then its globs expanded against the
names the policy knows exactly (route aliases, providers' ``models`` lists). Claude Code's background
("haiku") model is set too, to an allowed model with ``haiku`` in its name if there is one, else the
same model. A key that may use any routed model keeps Claude Code's defaults.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from policies import GatewayPolicy, Principal
from policies.routing import ModelRouter, is_glob

SHARED_FILES_NOTE = """\
Keep the secret out of shared files:
- `claude mcp add --scope user` stores the server (with the secret) in your own ~/.claude.json,
  not in the project's .mcp.json, which is usually committed.
- Put the env block in your own ~/.claude/settings.json (merge it into the file if you have one),
  or for one project in .claude/settings.local.json (git-ignored) - never in .claude/settings.json,
  which is shared with everyone who clones the project.
- The files written by `--write` that hold the secret are readable by you only (0600); delete them
  once you have applied them. Anyone with the secret can spend this key's budget.
"""


class OnboardingError(ValueError):
    """Onboarding cannot be done as asked (e.g. a ``--model`` the key may not use)."""


@dataclass(frozen=True, slots=True)
class ModelChoice:
    model: str | None
    small_model: str | None
    explanation: str


@dataclass(frozen=True, slots=True)
class OnboardingKit:
    key_id: str
    gateway_url: str
    mcp_add: str
    env: dict[str, str]
    models: ModelChoice

    def settings_json(self) -> str:
        return orjson.dumps({"env": self.env}, option=orjson.OPT_INDENT_2).decode() + "\n"

    def readme(self) -> str:
        lines = [
            f"Onboarding for virtual key {self.key_id} (gateway {self.gateway_url})",
            "",
            "1. Register the gateway's MCP tools with Claude Code (run once):",
            "     sh claude-mcp-add.sh",
            "2. Let Claude Code's model traffic go through the gateway: merge settings.json into",
            "   ~/.claude/settings.json (its env block: ANTHROPIC_BASE_URL, the key, the model).",
            f"3. Model: {self.models.explanation}",
            "",
            SHARED_FILES_NOTE,
        ]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "gateway_url": self.gateway_url,
            "claude_mcp_add": self.mcp_add,
            "settings": {"env": self.env},
            "model": self.models.model,
            "model_explanation": self.models.explanation,
        }


def default_gateway_url(policy: GatewayPolicy) -> str:
    host = policy.gateway.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{policy.gateway.port}"


def _anthropic_target(router: ModelRouter, principal: Principal, model: str) -> bool:
    routed = router.route(model, principal)
    if routed is None:
        return False
    targets = [t for t in routed.targets if t.kind == "anthropic"]
    return bool(targets) and router.allows(principal, model, targets[0].model)


def _known_names(policy: GatewayPolicy) -> list[str]:
    """Model names the policy spells out: route aliases, then Anthropic-compatible providers' models."""
    names = [r.match for r in policy.routes if not is_glob(r.match)]
    for provider in policy.providers:
        if provider.kind == "anthropic":
            names.extend(provider.models)
    return list(dict.fromkeys(names))


def choose_model(
    policy: GatewayPolicy, principal: Principal, own_models: list[str] | None, wanted: str | None = None
) -> ModelChoice:
    """The model Claude Code should ask for with this key (see the module's docstring); ``wanted``
    (``--model``) is taken if the key may use it."""
    router = ModelRouter(policy, {principal.key_id: tuple(own_models)} if own_models is not None else None)
    patterns = router.allowed_patterns(principal)
    if wanted is not None and not _anthropic_target(router, principal, wanted):
        raise OnboardingError(
            f"model {wanted!r} is not one this key may use through an Anthropic-compatible route"
        )
    if patterns is None:
        if wanted is not None:
            return ModelChoice(
                wanted, None, f"{wanted} (chosen with --model; the key may use any routed model)"
            )
        return ModelChoice(
            None, None, "any model the gateway routes: Claude Code's own default model is used"
        )
    known = _known_names(policy)
    exact = [p for p in patterns if not is_glob(p)]
    expanded = [n for p in patterns if is_glob(p) for n in known if fnmatch.fnmatchcase(n, p)]
    usable = [m for m in dict.fromkeys([*exact, *expanded]) if _anthropic_target(router, principal, m)]
    allowed = ", ".join(patterns)
    if wanted is not None:
        usable = [wanted, *usable]
    if not usable:
        return ModelChoice(
            None,
            None,
            f"none found: the key may use only {allowed}, and no model name the policy spells out (route "
            "aliases, providers' models) is one of them; give one with --model",
        )
    small = next((m for m in usable if "haiku" in m), usable[0])
    return ModelChoice(
        usable[0], small, f"{usable[0]}, background tasks {small} (the key may use: {allowed})"
    )


def build_kit(
    policy: GatewayPolicy,
    principal: Principal,
    own_models: list[str] | None,
    secret: str,
    gateway_url: str,
    model: str | None = None,
) -> OnboardingKit:
    base = gateway_url.rstrip("/")
    choice = choose_model(policy, principal, own_models, model)
    name = policy.mcp.tool_naming.client_server_name
    mcp_add = (
        f"claude mcp add --transport http --scope user {shlex.quote(name)} {shlex.quote(base + '/mcp')} "
        f'--header "Authorization: Bearer {secret}"'
    )
    env = {"ANTHROPIC_BASE_URL": base, "ANTHROPIC_AUTH_TOKEN": secret}
    if choice.model is not None:
        env["ANTHROPIC_MODEL"] = choice.model
    if choice.small_model is not None:
        env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] = choice.small_model
        env["ANTHROPIC_SMALL_FAST_MODEL"] = choice.small_model
    return OnboardingKit(principal.key_id, base, mcp_add, env, choice)


def _write_private(path: Path, text: str) -> None:
    """Create or replace ``path`` readable by its owner only, never briefly wider."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def write_kit(kit: OnboardingKit, directory: Path) -> list[Path]:
    """``claude-mcp-add.sh`` and ``settings.json`` (0600: they hold the secret) and
    ``README-onboarding.txt`` in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "claude-mcp-add.sh"
    settings = directory / "settings.json"
    readme = directory / "README-onboarding.txt"
    _write_private(
        script,
        f"#!/bin/sh\n# Registers the MCP gateway with Claude Code for key {kit.key_id}.\n{kit.mcp_add}\n",
    )
    _write_private(settings, kit.settings_json())
    readme.write_text(kit.readme(), encoding="utf-8")
    return [script, settings, readme]
