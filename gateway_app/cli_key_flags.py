"""The flags of ``mcp-gateway keys``: a key's settings in the policy file's shapes, durations and
times, and the database options every command takes. They only parse; `gateway_app.keys_admin`
validates."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class CliError(Exception):
    """Stop the command with a message on stderr and an exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


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


def database_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--config",
        help="policy file: its gateway.database_url, and the policy keys are checked against "
        "(teams, servers, keys it declares)",
    )
    cmd.add_argument(
        "--database-url", help="the database to use; overrides the policy file's gateway.database_url"
    )
    cmd.add_argument("--json", action="store_true", help="print JSON instead of tables and sentences")


def settings_flags(cmd: argparse.ArgumentParser) -> None:
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
