"""What the ``mcp-gateway`` commands share: the env file, the policy file (or exit 2 with its
errors), logging, and the gateway's database."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from gateway_app.settings import load_policy_file
from policies import ConfigError, GatewayPolicy, LoadedPolicy


def load_env_file(path: str | Path) -> dict[str, str]:
    """KEY=VALUE lines (``#`` comments, optional quotes); values already in the environment win."""
    values: dict[str, str] = {}
    file = Path(path)
    if not file.exists():
        return values
    for raw in file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
        os.environ.setdefault(name, value)
    return values


def load_policy_or_exit(path: str) -> LoadedPolicy:
    try:
        return load_policy_file(path)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        raise SystemExit(2) from None


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def database_url_of(args: argparse.Namespace, policy: GatewayPolicy | None = None) -> str:
    """``--database-url``, else the policy file's ``gateway.database_url``."""
    url: str | None = args.database_url
    if url is None:
        if args.config is None:
            raise SystemExit("give --config FILE (its gateway.database_url is used) or --database-url URL")
        url = (policy or load_policy_or_exit(args.config).policy).gateway.database_url
    return url


def engine_for(
    args: argparse.Namespace, policy: GatewayPolicy | None = None, *, read_only: bool = False
) -> Any:
    """The gateway's database at this release's schema; commands that only read it never create one,
    and none of them upgrades an existing one (`open_database`; ``db upgrade`` does)."""
    from gateway_app.database import DatabaseNotFound, SchemaError, open_database

    try:
        return open_database(database_url_of(args, policy), create=not read_only)
    except (DatabaseNotFound, SchemaError) as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
