"""The ``mcp-gateway`` command: serve, check, keys, audit, demo-secrets."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from policies import ConfigError, GatewayPolicy, LoadedPolicy, Principal, load_policy
from policies.secrets import SECRET_PREFIX

from .serving import raise_open_file_limit, uvicorn_config
from .settings import Settings

logger = logging.getLogger("mcp_gateway")


# -- helpers -----------------------------------------------------------------------------


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


def _load(path: str) -> LoadedPolicy:
    try:
        return load_policy(path)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        raise SystemExit(2) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def connect_lines(policy: GatewayPolicy, host: str, port: int) -> list[str]:
    """How to connect Claude Code with every key whose secret this process can see: the
    ``claude mcp add`` line, and the environment for model traffic when providers are configured."""
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
    base = f"http://{shown_host}:{port}"
    name = policy.mcp.tool_naming.client_server_name
    lines = []
    for key in policy.virtual_keys:
        secret = os.environ.get(key.secret_env) if key.secret_env else None
        if secret and not key.disabled:
            team = f", team {key.team}" if key.team else ""
            lines.append(f"# {key.display_name} ({key.id}{team})")
            if policy.mcp.servers:
                lines.append(
                    f"claude mcp add --transport http {name} {base}/mcp "
                    f'--header "Authorization: Bearer {secret}"'
                )
            if policy.providers:
                lines.append(f"export ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY={secret}")
    return lines


# -- serve -------------------------------------------------------------------------------


class GatewayServer(uvicorn.Server):
    """uvicorn, plus: tell long-lived streams to end as soon as stopping starts, and never skip
    the lifespan shutdown (it flushes the audit log) on a second Ctrl+C."""

    def __init__(self, config: uvicorn.Config, shutdown_signal: Any, banner: list[str]) -> None:
        super().__init__(config)
        self._shutdown_signal = shutdown_signal
        self._banner = banner

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._banner:
            print(
                "\nConnect Claude Code with one of these keys:\n" + "\n".join(self._banner) + "\n", flush=True
            )

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            logger.warning("already stopping: finishing calls in flight and flushing the audit log")
        self._captured_signals.append(sig)
        self.should_exit = True

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        self._shutdown_signal.trigger()
        await super().shutdown(sockets)


def cmd_serve(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    if args.env_file:
        load_env_file(args.env_file)
    loaded = _load(args.config)
    settings = Settings.from_loaded(loaded, host=args.host, port=args.port, database_url=args.database_url)
    from .app import create_app

    app = create_app(settings)
    gateway = settings.policy.gateway
    raise_open_file_limit(gateway.max_connections)
    config = uvicorn_config(app, gateway, log_level=args.log_level.lower())
    server = GatewayServer(
        config, app.state.shutdown, connect_lines(settings.policy, gateway.host, gateway.port)
    )
    server.run()
    return 0


# -- check -------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    if args.env_file:
        load_env_file(args.env_file)
    loaded = _load(args.config)
    policy = loaded.policy
    print(f"{args.config}: OK")
    print(
        f"  {len(policy.virtual_keys)} virtual keys, {len(policy.teams)} teams, "
        f"{len(policy.mcp.servers)} MCP servers, {len(policy.providers)} model providers"
    )
    for warning in loaded.warnings:
        print(f"  warning: {warning}")
    if args.connect:
        return asyncio.run(_check_connect(policy, args.timeout))
    return 0


async def _check_connect(policy: GatewayPolicy, timeout: float) -> int:
    from .hub import UpstreamHub

    hub = UpstreamHub(policy)
    hub.start()
    try:
        await hub.wait_ready(timeout)
        statuses, bindings, index = hub.status(), dict(hub.bindings), hub.index
    finally:
        await hub.stop()
    failed = 0
    for status in statuses:
        if status["state"] == "disabled":
            print(f"  server {status['name']}: disabled")
            continue
        tools = [b.exposed_name for b in bindings.values() if b.server == status["name"]]
        if tools:
            print(f"  server {status['name']}: {len(tools)} tools: {', '.join(sorted(tools))}")
        else:
            failed += 1
            print(f"  server {status['name']}: NOT READY ({status.get('last_error') or 'no tools'})")
    for collision in index.collisions:
        failed += 1
        print(f"  collision: {collision.describe()}")
    for warning in index.warnings:
        print(f"  warning: {warning}")
    for key in policy.virtual_keys:
        grant = policy.tool_grant(Principal(key.id, key.display_name, key.team, "file"))
        visible = sorted(b.exposed_name for b in bindings.values() if grant.allows(b.server, b.tool))
        shown = ", ".join(visible) if visible else "nothing"
        print(f"  key {key.id} ({grant.source}): {len(visible)} tools: {shown}")
    return 1 if failed else 0


# -- keys --------------------------------------------------------------------------------


def _engine_for(args: argparse.Namespace) -> Any:
    from .db import create_schema, make_engine

    url = args.database_url
    if url is None:
        if args.config is None:
            raise SystemExit("give --config FILE (its gateway.database_url is used) or --database-url URL")
        url = _load(args.config).policy.gateway.database_url
    engine = make_engine(url)
    create_schema(engine)
    return engine


def cmd_keys(args: argparse.Namespace) -> int:
    from .keystore import create_key, list_keys, revoke_key

    engine = _engine_for(args)
    if args.keys_command == "create":
        expires = timedelta(days=args.expires_in_days) if args.expires_in_days else None
        record, secret = create_key(engine, args.key_id, name=args.name, team=args.team, expires_in=expires)
        print(f"Created a secret for key {record.key_id!r} (prefix {record.prefix}). It is shown once:")
        print(secret)
        return 0
    if args.keys_command == "list":
        rows = list_keys(engine, include_revoked=args.all)
        print(f"{'KEY ID':24} {'PREFIX':12} {'TEAM':14} {'CREATED (UTC)':20} {'EXPIRES':20} STATE")
        for row in rows:
            state = "revoked" if row.revoked_at else ("active" if row.is_active() else "expired")
            until = row.expires_at.strftime("%Y-%m-%d %H:%M") if row.expires_at else "-"
            print(
                f"{row.key_id:24} {row.prefix:12} {row.team or '-':14} "
                f"{row.created_at.strftime('%Y-%m-%d %H:%M'):20} {until:20} {state}"
            )
        return 0
    count = revoke_key(engine, args.key_id)
    if count == 0:
        print(f"no active secret for key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {count} secret(s) of key {args.key_id!r}; gateways stop accepting them within seconds")
    return 0


# -- audit -------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit.query import parse_since, recent_calls, summary

    engine = _engine_for(args)
    since = parse_since(args.since) if args.since else None
    if args.summary:
        print(f"{'KEY':20} {'TEAM':14} {'SERVER':14} {'TOOL':24} {'STATUS':14} CALLS")
        for row in summary(engine, since=since, key_id=args.key, team=args.team):
            print(
                f"{row[0]:20} {row[1] or '-':14} {row[2] or '-':14} {row[3] or '-':24} {row[4]:14} {row[5]}"
            )
        return 0
    rows = recent_calls(
        engine, since=since, key_id=args.key, team=args.team, status=args.status, limit=args.limit
    )
    for call in rows:
        stamp = call.timestamp.strftime("%Y-%m-%d %H:%M:%S")
        error = f"  {call.error}" if call.error else ""
        print(
            f"{stamp} {call.key_id:16} {call.exposed_name:32} {call.status:14} "
            f"{call.latency_ms:8.1f} ms{error}"
        )
    return 0


# -- demo secrets ------------------------------------------------------------------------


def cmd_demo_secrets(args: argparse.Namespace) -> int:
    """Give every ``secret_env`` key of a config a random secret in an env file (kept across runs)."""
    loaded = _load(args.config)
    out = Path(args.out)
    existing = load_env_file(out) if out.exists() else {}
    lines = []
    for key in loaded.policy.virtual_keys:
        if key.secret_env and key.secret_env not in existing and key.secret_env not in os.environ:
            lines.append(f"{key.secret_env}={SECRET_PREFIX}demo_{secrets.token_urlsafe(24)}")
    if lines:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as fh:
            if not existing:
                fh.write("# Demo key secrets for the example configuration (local use only).\n")
            fh.write("\n".join(lines) + "\n")
        out.chmod(0o600)
        print(f"wrote {len(lines)} demo secret(s) to {out}")
    return 0


# -- main --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="policy file (YAML)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--database-url")
    serve.add_argument("--env-file", help="KEY=VALUE file loaded into the environment first")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate a policy file")
    check.add_argument("--config", required=True)
    check.add_argument("--env-file")
    check.add_argument("--connect", action="store_true", help="also start every upstream and list its tools")
    check.add_argument("--timeout", type=float, default=20.0)
    check.set_defaults(func=cmd_check)

    keys = sub.add_parser("keys", help="manage key secrets kept in the database")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    for name in ("create", "list", "revoke"):
        cmd = keys_sub.add_parser(name)
        cmd.add_argument("--config", help="policy file whose gateway.database_url to use")
        cmd.add_argument("--database-url")
        if name in ("create", "revoke"):
            cmd.add_argument("key_id", metavar="ID")
        if name == "create":
            cmd.add_argument("--name")
            cmd.add_argument("--team")
            cmd.add_argument("--expires-in-days", type=float)
        if name == "list":
            cmd.add_argument("--all", action="store_true", help="include revoked secrets")
        cmd.set_defaults(func=cmd_keys)

    audit = sub.add_parser("audit", help="query the audit log")
    audit.add_argument("--config")
    audit.add_argument("--database-url")
    audit.add_argument("--since", help="e.g. 15m, 2h, 7d or an ISO timestamp")
    audit.add_argument("--key")
    audit.add_argument("--team")
    audit.add_argument("--status")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--summary", action="store_true", help="counts per key, team, server, tool and status")
    audit.set_defaults(func=cmd_audit)

    demo = sub.add_parser("demo-secrets", help="create random secrets for a config's secret_env keys")
    demo.add_argument("--config", required=True)
    demo.add_argument("--out", required=True)
    demo.set_defaults(func=cmd_demo_secrets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
