"""``mcp-gateway keys create|list|show|update|revoke|rotate`` and ``mcp-gateway onboard``.

A thin layer over `gateway_app.keys_admin` (which decides what a change may be) and
`gateway_app.onboarding`: parse flags, call the service, print. Settings flags take the policy
file's shapes; ``--json`` prints machine-readable output. A new secret is printed once, by
``create`` and ``rotate`` (``--onboard`` prints, or ``--write`` writes, what a developer needs with
it); ``onboard`` on its own needs the secret from the environment or a prompt, never from a file.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from gateway_app.cli import _engine_for, _load
from gateway_app.keys_admin import (
    DEFAULT_ROTATION_GRACE,
    SETTING_FIELDS,
    IssuedKey,
    KeyInfo,
    KeyNotFound,
    KeyRequestError,
    KeysAdmin,
    parse_settings,
    settings_json,
)
from gateway_app.onboarding import OnboardingError, build_kit, default_gateway_url, write_kit
from policies import GatewayPolicy

ONBOARD_SECRET_ENV = "MCPGW_ONBOARD_SECRET"  # noqa: S105 - the name of a variable, not a secret
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class CliError(Exception):
    """Stop the command with a message on stderr and an exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


# -- parsing flags -----------------------------------------------------------------------------


def duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` (a bare number is seconds)."""
    found = _DURATION.match(text)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90d, 12h, 30m, 45s or 2w")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


def timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2027-01-31T18:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _yaml_value(flag: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{flag}: not valid YAML ({str(exc).splitlines()[0]})") from None


def _mapping(flag: str, text: str) -> Any:
    """A YAML mapping (``{requests_per_minute: 60}``) or ``name=value,name=value``."""
    if "=" in text and not text.lstrip().startswith("{"):
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise CliError(f"{flag}: write name=value,name=value or a YAML mapping")
        return {name.strip(): _yaml_value(flag, value) for name, value in pairs}
    return _yaml_value(flag, text)


def _permissions(text: str) -> Any:
    """``*``, ``server,server`` or YAML (``[filesystem]``, ``{filesystem: [read_file, "list_*"]}``)."""
    stripped = text.strip()
    if stripped == "*":
        return "*"
    if stripped.startswith(("[", "{")):
        return _yaml_value("--tools", stripped)
    return [part.strip() for part in stripped.split(",") if part.strip()]


def setting_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings flags given, in the policy file's shapes (validated by the service)."""
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = args.name
    if args.team is not None:
        changes["team"] = args.team
    if args.allowed_models is not None:
        changes["allowed_models"] = [m.strip() for m in args.allowed_models.split(",") if m.strip()]
    if args.rate_limit is not None:
        changes["rate_limit"] = _mapping("--rate-limit", args.rate_limit)
    if args.budget is not None:
        changes["budget"] = _mapping("--budget", args.budget)
    if args.tools is not None:
        changes["tool_permissions"] = _permissions(args.tools)
    if args.expires_in is not None and args.expires_at is not None:
        raise CliError("give --expires-in or --expires-at, not both")
    if args.expires_in is not None:
        changes["expires_at"] = datetime.now(UTC) + args.expires_in
    elif args.expires_at is not None:
        changes["expires_at"] = args.expires_at
    return changes


# -- output ------------------------------------------------------------------------------------


def _console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _state(key: KeyInfo) -> str:
    until = key.rotating_until
    if key.state == "active" and until is not None:
        return f"active (old secret until {_when(until)})"
    if key.state == "expired":
        return f"expired {_when(key.settings.expires_at)}"
    return key.state


def _own(key: KeyInfo) -> str:
    labels = {
        "allowed_models": "models",
        "rate_limit": "limits",
        "budget": "budget",
        "tool_permissions": "tools",
    }
    own = [label for name, label in labels.items() if getattr(key.settings, name) is not None]
    return ", ".join(own) or "-"


def _settings_rows(key: KeyInfo) -> list[tuple[str, str]]:
    """Each setting: the key's own value, or where it comes from instead."""
    inherited = "(the policy file's)" if key.declared_in_file else "(inherited)"
    dumped = settings_json(key.settings)
    rows = []
    for name in SETTING_FIELDS:
        value = dumped[name]
        if name == "expires_at":
            rows.append((name, _when(key.settings.expires_at) if value else "never"))
        elif value is None:
            rows.append((name, key.key_id if name == "name" and not key.declared_in_file else inherited))
        else:
            rows.append((name, value if isinstance(value, str) else orjson.dumps(value).decode()))
    return rows


def print_key(key: KeyInfo) -> None:
    console = _console()
    table = Table(title=f"key {key.key_id}: {_state(key)}", box=box.SIMPLE, show_header=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    for name, value in _settings_rows(key):
        table.add_row(name, value)
    if key.declared_in_file:
        table.add_row("", "declared in the policy file, which decides its settings (but its expiry)")
    console.print(table)
    secrets = Table(title="secrets", box=box.SIMPLE)
    for column in ("PREFIX", "CREATED (UTC)", "STATE", "WORKS UNTIL (UTC)"):
        secrets.add_column(column)
    for secret in key.secrets:
        until = secret.grace_until if secret.state in ("grace", "replaced") else key.settings.expires_at
        secrets.add_row(secret.prefix, _when(secret.created_at), secret.state, _when(until))
    console.print(secrets)


def print_issued(issued: IssuedKey, verb: str) -> None:
    key = issued.key
    team = f"team {key.settings.team}" if key.settings.team else "no team"
    print(
        f"{verb} key {key.key_id!r} ({team}, secret prefix {key.current_prefix}). Its secret is shown once:"
    )
    print(issued.secret)
    if issued.replaced_until is not None:
        print(f"the replaced secret works until {_when(issued.replaced_until)} UTC, then is refused")
    for note in issued.notes:
        print(f"({note})", file=sys.stderr)


# -- commands ----------------------------------------------------------------------------------


def _policy(args: argparse.Namespace) -> GatewayPolicy | None:
    return _load(args.config).policy if args.config else None


def _admin(args: argparse.Namespace, policy: GatewayPolicy | None, *, read_only: bool = False) -> KeysAdmin:
    return KeysAdmin(_engine_for(args, policy, read_only=read_only), policy)


def cmd_keys(args: argparse.Namespace) -> int:
    try:
        return int(_KEY_COMMANDS[args.keys_command](args))
    except KeyNotFound as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 1
    except (KeyRequestError, OnboardingError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return exc.status


def _create(args: argparse.Namespace) -> int:
    policy = _policy(args)
    settings = parse_settings(setting_changes(args))
    if args.onboard and policy is None:
        raise CliError(
            "--onboard needs --config FILE (the policy decides the model and the gateway's address)"
        )
    admin = _admin(args, policy)
    issued = admin.create(args.key_id, settings)
    _report_issued(args, admin, issued, "Created")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    policy = _policy(args)
    if args.onboard and policy is None:
        raise CliError(
            "--onboard needs --config FILE (the policy decides the model and the gateway's address)"
        )
    admin = _admin(args, policy)
    issued = admin.rotate(args.key_id, args.grace)
    _report_issued(args, admin, issued, "Rotated")
    return 0


def _report_issued(args: argparse.Namespace, admin: KeysAdmin, issued: IssuedKey, verb: str) -> None:
    kit = None
    if args.onboard:
        assert admin.policy is not None
        principal, own_models = admin.subject(issued.key.key_id)
        url = args.gateway_url or default_gateway_url(admin.policy)
        kit = build_kit(admin.policy, principal, own_models, issued.secret, url, args.model)
    if args.json:
        out: dict[str, Any] = {**issued.key.to_json(), "secret": issued.secret}
        if issued.replaced_until is not None:
            out["replaced_secrets_work_until"] = issued.replaced_until.isoformat()
        if kit is not None:
            out["onboarding"] = kit.to_json()
        _print_json(out)
    else:
        print_issued(issued, verb)
    if kit is not None:
        _deliver(kit, args, show=not args.json)


def _list(args: argparse.Namespace) -> int:
    policy = _policy(args)
    admin = _admin(args, policy, read_only=True)
    keys = admin.keys(include_revoked=args.all)
    revocations = admin.file_revocations() if args.all else []
    if args.json:
        listing: dict[str, Any] = {"keys": [k.to_json() for k in keys]}
        if args.all:
            listing["file_revocations"] = [
                {"key_id": r.key_id, "revoked_at": r.revoked_at.isoformat()} for r in revocations
            ]
        _print_json(listing)
        return 0
    table = Table(box=box.SIMPLE)
    for column in ("KEY ID", "NAME", "TEAM", "SECRET", "OWN", "CREATED (UTC)", "EXPIRES (UTC)", "STATE"):
        table.add_column(column, no_wrap=column in ("KEY ID", "SECRET"))
    for key in keys:
        table.add_row(
            key.key_id,
            key.settings.name or "-",
            key.settings.team or ("(file)" if key.declared_in_file else "-"),
            key.current_prefix,
            _own(key),
            _when(key.created_at),
            _when(key.settings.expires_at),
            _state(key),
        )
    for revocation in revocations:
        table.add_row(
            revocation.key_id, "-", "-", "(file)", "-", "-", "-", f"revoked {_when(revocation.revoked_at)}"
        )
    _console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    key = _admin(args, _policy(args), read_only=True).show(args.key_id)
    if args.json:
        _print_json(key.to_json())
    else:
        print_key(key)
    return 0


def _update(args: argparse.Namespace) -> int:
    policy = _policy(args)
    admin = _admin(args, policy)
    key = admin.update(args.key_id, setting_changes(args), args.unset or ())
    if args.json:
        _print_json(key.to_json())
    else:
        print(f"updated key {key.key_id!r}; running gateways on this database apply it within about a second")
        print_key(key)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    policy = _policy(args)
    admin = _admin(args, policy)
    key_id = args.key_id
    result = admin.revoke(key_id)
    if args.json:
        _print_json(
            {
                "key_id": key_id,
                "database_secrets_revoked": result.database_secrets,
                "file_secret_revoked": result.file_secret,
            }
        )
        return 0 if result.database_secrets or result.file_secret else 1
    if result.database_secrets:
        print(f"revoked {result.database_secrets} database secret(s) of key {key_id!r}")
        if policy is None:
            print("(a policy-file secret of this id is only revoked with --config FILE)", file=sys.stderr)
    if result.file_secret:
        print(f"revoked the policy-file secret of key {key_id!r} (whatever value it has now or later)")
    if result.database_secrets or result.file_secret:
        print("running gateways on this database refuse it within about a second and close its MCP sessions")
        return 0
    if result.file_secret_already_revoked:
        print(f"key {key_id!r} is already revoked", file=sys.stderr)
    elif policy is None:
        print(
            f"no active database secret for key {key_id!r} (to revoke a key declared in a policy file, "
            "give --config FILE)",
            file=sys.stderr,
        )
    else:
        print(f"no active secret for key {key_id!r}", file=sys.stderr)
    return 1


_KEY_COMMANDS = {
    "create": _create,
    "list": _list,
    "show": _show,
    "update": _update,
    "revoke": _revoke,
    "rotate": _rotate,
}


# -- onboarding --------------------------------------------------------------------------------


def _deliver(kit: Any, args: argparse.Namespace, *, show: bool) -> None:
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
        policy = _load(args.config).policy
        admin = _admin(args, policy, read_only=True)
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
        _print_json(kit.to_json())
    _deliver(kit, args, show=not args.json)
    return 0


# -- the parser --------------------------------------------------------------------------------


def _database_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--config",
        help="policy file: its gateway.database_url, and the policy keys are checked against "
        "(teams, servers, keys it declares)",
    )
    cmd.add_argument(
        "--database-url", help="the database to use; overrides the policy file's gateway.database_url"
    )
    cmd.add_argument("--json", action="store_true", help="print JSON instead of tables and sentences")


def _settings_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--name", help="display name (default: the key id)")
    cmd.add_argument(
        "--team", help="a team the policy (--config) knows; the key inherits its models and tools"
    )
    cmd.add_argument(
        "--allowed-models",
        metavar="LIST",
        help="comma-separated model names or globs (e.g. 'claude-sonnet-*,fast'); default: the team's",
    )
    cmd.add_argument(
        "--rate-limit",
        metavar="LIMITS",
        help="the key's own limits, as a file key's rate_limit: "
        "'requests_per_minute=60,tokens_per_minute=400000' or YAML; fields: requests_per_minute, "
        "tokens_per_minute, concurrent_requests, tool_calls_per_minute",
    )
    cmd.add_argument(
        "--budget",
        metavar="LIMITS",
        help="the key's own budget in USD, as a budgets.virtual_key_overrides entry: "
        "'daily_limit_usd=20,alert_threshold=0.8' or YAML; fields: daily_limit_usd, weekly_limit_usd, "
        "monthly_limit_usd, alert_threshold",
    )
    cmd.add_argument(
        "--tools",
        metavar="SPEC",
        help="tool permissions, replacing the team's: '*', 'filesystem,database' (servers) or YAML "
        "'{filesystem: [read_file, \"list_*\"]}' (tool globs per server)",
    )
    cmd.add_argument("--expires-in", type=duration, metavar="DURATION", help="expire after e.g. 90d, 12h, 2w")
    cmd.add_argument(
        "--expires-at", type=timestamp, metavar="TIME", help="expire at an ISO 8601 time (UTC by default)"
    )


def _onboard_flags(cmd: argparse.ArgumentParser) -> None:
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


def add_key_commands(sub: Any) -> None:
    """Register ``keys ...`` and ``onboard`` on the ``mcp-gateway`` parser's subcommands."""
    keys = sub.add_parser("keys", help="manage the virtual keys kept in the database")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    create = keys_sub.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument(
        "key_id", metavar="ID", help="the key's id (what the audit log and limits are keyed by)"
    )
    _settings_flags(create)
    create.add_argument(
        "--onboard", action="store_true", help="also print (or --write) what a developer needs to use the key"
    )
    _onboard_flags(create)

    listing = keys_sub.add_parser("list", help="the keys and the state of their secrets")
    listing.add_argument(
        "--all", action="store_true", help="include revoked keys and revoked policy-file secrets"
    )

    show = keys_sub.add_parser("show", help="one key's settings and secrets")
    show.add_argument("key_id", metavar="ID", help="the key's id")

    update = keys_sub.add_parser("update", help="change a key's settings (its secret stays)")
    update.add_argument("key_id", metavar="ID", help="the key's id")
    _settings_flags(update)
    update.add_argument(
        "--unset",
        action="append",
        choices=SETTING_FIELDS,
        metavar="FIELD",
        help="return a setting to inheriting (no expiry, no own limits...); repeatable; one of "
        + ", ".join(SETTING_FIELDS),
    )

    revoke = keys_sub.add_parser(
        "revoke",
        help="end a key now: its secrets are refused and its MCP sessions closed within about a second",
    )
    revoke.add_argument(
        "key_id", metavar="ID", help="the key's id (with --config, also a key the file declares)"
    )

    rotate = keys_sub.add_parser(
        "rotate", help="give a key a new secret (printed once); the old one works for --grace"
    )
    rotate.add_argument("key_id", metavar="ID", help="the key's id")
    hours = DEFAULT_ROTATION_GRACE.total_seconds() / 3600
    rotate.add_argument(
        "--grace",
        type=duration,
        default=DEFAULT_ROTATION_GRACE,
        metavar="DURATION",
        help=f"how long the replaced secret keeps working (default {hours:g}h; 0 stops it now)",
    )
    rotate.add_argument(
        "--onboard",
        action="store_true",
        help="also print (or --write) what a developer needs with the new secret",
    )
    _onboard_flags(rotate)

    for cmd in (create, listing, show, update, revoke, rotate):
        _database_flags(cmd)
        cmd.set_defaults(func=cmd_keys)

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
    _onboard_flags(onboard)
    onboard.set_defaults(func=cmd_onboard)
