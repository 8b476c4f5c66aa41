"""``mcp-gateway keys create|list|show|update|revoke|rotate`` and ``mcp-gateway onboard``.

A thin layer over `gateway_app.keys_admin` (which decides what a change may be) and
`gateway_app.onboarding`: parse flags, call the service, print. Settings flags take the policy
file's shapes; ``--json`` prints machine-readable output. A new secret is printed once, by
``create`` and ``rotate`` (``--onboard`` prints, or ``--write`` writes, what a developer needs with
it); ``onboard`` (`gateway_app.cli_onboard`) does it later. Flags: `gateway_app.cli_key_flags`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.table import Table

from gateway_app.cli_base import engine_for, load_policy_or_exit
from gateway_app.cli_key_flags import CliError, database_flags, duration, setting_changes, settings_flags
from gateway_app.cli_onboard import add_onboard_command, deliver, onboard_flags
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
from gateway_app.onboarding import OnboardingError, build_kit, default_gateway_url
from policies import GatewayPolicy

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
    return load_policy_or_exit(args.config).policy if args.config else None


def _admin(args: argparse.Namespace, policy: GatewayPolicy | None, *, read_only: bool = False) -> KeysAdmin:
    return KeysAdmin(engine_for(args, policy, read_only=read_only), policy)


def cmd_keys(args: argparse.Namespace) -> int:
    try:
        status = int(_KEY_COMMANDS[args.keys_command](args))
        if status == 0 and args.keys_command in _CHANGES and args.config:
            from gateway_app.peers import announce_key_change

            announce_key_change(_policy(args))  # replicas on Redis apply it at once, not at their next poll
        return status
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
        deliver(kit, args, show=not args.json)


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


_CHANGES = ("create", "update", "revoke", "rotate")
_KEY_COMMANDS = {
    "create": _create,
    "list": _list,
    "show": _show,
    "update": _update,
    "revoke": _revoke,
    "rotate": _rotate,
}


def add_key_commands(sub: Any) -> None:
    """Register ``keys ...`` and ``onboard`` on the ``mcp-gateway`` parser's subcommands."""
    keys = sub.add_parser("keys", help="manage the virtual keys kept in the database")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    create = keys_sub.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument(
        "key_id", metavar="ID", help="the key's id (what the audit log and limits are keyed by)"
    )
    settings_flags(create)
    create.add_argument(
        "--onboard", action="store_true", help="also print (or --write) what a developer needs to use the key"
    )
    onboard_flags(create)

    listing = keys_sub.add_parser("list", help="the keys and the state of their secrets")
    listing.add_argument(
        "--all", action="store_true", help="include revoked keys and revoked policy-file secrets"
    )

    show = keys_sub.add_parser("show", help="one key's settings and secrets")
    show.add_argument("key_id", metavar="ID", help="the key's id")

    update = keys_sub.add_parser("update", help="change a key's settings (its secret stays)")
    update.add_argument("key_id", metavar="ID", help="the key's id")
    settings_flags(update)
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
    onboard_flags(rotate)

    for cmd in (create, listing, show, update, revoke, rotate):
        database_flags(cmd)
        cmd.set_defaults(func=cmd_keys)
    add_onboard_command(sub)
