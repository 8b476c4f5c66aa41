"""``mcp-gateway onboard --key ID``, and the onboarding output ``keys create|rotate --onboard`` share.

The gateway keeps no plain secret, so onboarding a key later takes its secret from the environment
(``$MCPGW_ONBOARD_SECRET``) or a prompt, and checks it is a working secret of that key; the kit is
printed, or written with ``--write DIR`` (`gateway_app.onboarding`).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway_app.cli_base import engine_for, load_policy_or_exit
from gateway_app.cli_key_flags import CliError
from gateway_app.keys_admin import KeyNotFound, KeyRequestError, KeysAdmin
from gateway_app.onboarding import OnboardingError, OnboardingKit, build_kit, default_gateway_url, write_kit

ONBOARD_SECRET_ENV = "MCPGW_ONBOARD_SECRET"  # noqa: S105 - the name of a variable, not a secret


def deliver(kit: OnboardingKit, args: argparse.Namespace, *, show: bool) -> None:
    """Write the kit to ``--write DIR`` or print it (``show``; with --json it is in the JSON)."""
    if args.write is not None:
        written = write_kit(kit, Path(args.write))
        print(
            f"wrote {', '.join(str(p) for p in written)} (the first two hold the secret: mode 0600)",
            file=sys.stderr,
        )
        return
    if not show:
        return
    print()
    print("# 1. MCP tools through the gateway (run once; --scope user keeps the secret in ~/.claude.json):")
    print(kit.mcp_add)
    print(
        "# 2. Model traffic: this env block goes into ~/.claude/settings.json (merge it if the file exists)"
    )
    print(kit.settings_json(), end="")
    print(f"# Model: {kit.models.explanation}")
    print("# Never put these in shared files (.mcp.json, a project's .claude/settings.json).")


def _onboard_secret(args: argparse.Namespace) -> str:
    secret = os.environ.get(args.secret_env, "").strip()
    if secret:
        return secret
    if sys.stdin.isatty():
        secret = getpass.getpass(f"secret of key {args.key} (not echoed): ").strip()
        if secret:
            return secret
    raise CliError(
        f"onboarding needs the key's secret: set {args.secret_env} (or run in a terminal to be asked). "
        "The gateway keeps only its digest; `keys create|rotate ... --onboard` does it with the new secret",
    )


def cmd_onboard(args: argparse.Namespace) -> int:
    try:
        policy = load_policy_or_exit(args.config).policy
        admin = KeysAdmin(engine_for(args, policy, read_only=True), policy)
        principal, own_models = admin.subject(args.key)
        secret = _onboard_secret(args)
        if not admin.verify_secret(args.key, secret):
            raise CliError(
                f"that is not a working secret of key {args.key!r} (revoked, expired, or another key's)"
            )
        kit = build_kit(
            policy, principal, own_models, secret, args.gateway_url or default_gateway_url(policy), args.model
        )
    except KeyNotFound as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 1
    except (KeyRequestError, OnboardingError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return exc.status
    if args.json:
        print(orjson.dumps(kit.to_json(), option=orjson.OPT_INDENT_2).decode())
    deliver(kit, args, show=not args.json)
    return 0


def onboard_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--write",
        metavar="DIR",
        help="write claude-mcp-add.sh, settings.json (both 0600: they hold the secret) and "
        "README-onboarding.txt into DIR instead of printing them",
    )
    cmd.add_argument(
        "--gateway-url",
        metavar="URL",
        help="the gateway's address as developers reach it (default: the policy's gateway.host and port)",
    )
    cmd.add_argument(
        "--model", help="the model Claude Code should use (default: chosen from what the key may use)"
    )


def add_onboard_command(sub: Any) -> None:
    onboard = sub.add_parser(
        "onboard", help="what one developer needs to use a key with Claude Code (MCP line, settings.json env)"
    )
    onboard.add_argument("--key", required=True, metavar="ID", help="the key's id")
    onboard.add_argument(
        "--config", required=True, help="policy file: the gateway's address, routes and teams"
    )
    onboard.add_argument("--database-url", help="overrides the policy file's gateway.database_url")
    onboard.add_argument(
        "--secret-env",
        default=ONBOARD_SECRET_ENV,
        metavar="VAR",
        help=f"environment variable holding the key's secret (default {ONBOARD_SECRET_ENV}); "
        "without it you are asked in a terminal",
    )
    onboard.add_argument("--json", action="store_true", help="print JSON")
    onboard_flags(onboard)
    onboard.set_defaults(func=cmd_onboard)
