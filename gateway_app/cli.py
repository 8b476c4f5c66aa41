"""The ``mcp-gateway`` command: serve, check, keys, onboard, audit, report, db, demo-secrets."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import uvicorn

from gateway_app.cli_base import configure_logging, load_env_file, load_policy_or_exit
from gateway_app.cli_check import add_check_command
from gateway_app.cli_db import add_db_commands
from gateway_app.cli_prune import add_audit_prune
from gateway_app.serving import SERVE_SWITCH_INTERVAL, raise_open_file_limit, uvicorn_config
from gateway_app.settings import Settings
from policies import ConfigError, GatewayPolicy
from policies.secrets import SECRET_PREFIX

logger = logging.getLogger("mcp_gateway")


def connect_lines(
    policy: GatewayPolicy,
    host: str,
    port: int,
    *,
    config_path: str = "gateway.yaml",
    show_secrets: bool = False,
) -> list[str]:
    """How to connect Claude Code with each enabled key: who it is, where its secret comes from, the
    ``claude mcp add`` line and, when providers are configured, the environment for model traffic.

    Secrets are never printed unless ``show_secrets`` (``serve --show-demo-secrets``, for a local demo):
    the line uses the key's environment variable (``$MCPGW_KEY_...``, which a shell holding it expands)
    or a placeholder instead.
    """
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
    base = f"http://{shown_host}:{port}"
    name = policy.mcp.tool_naming.client_server_name
    lines = []
    for key in policy.virtual_keys:
        if key.disabled:
            continue
        team = f", team {key.team}" if key.team else ""
        secret = os.environ.get(key.secret_env) if key.secret_env else None
        if show_secrets and secret:
            lines.append(f"# {key.display_name} ({key.id}{team})")
            token = secret
        else:
            create = f"mcp-gateway keys create {key.id} --config {config_path}"
            if key.secret_env:
                source = f"secret in ${key.secret_env}"
                token = f"${key.secret_env}"
            elif key.secret_sha256:
                source = f"secret: the one whose SHA-256 the policy holds (or a new one: {create})"
                token = f"<secret of {key.id}>"
            else:
                source = f"secret from: {create}"
                token = f"<secret of {key.id}>"
            lines.append(f"# {key.display_name} ({key.id}{team}): {source}")
        if policy.mcp.servers:
            lines.append(
                f'claude mcp add --transport http {name} {base}/mcp --header "Authorization: Bearer {token}"'
            )
        if policy.providers:
            lines.append(f"export ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY={token}")
    return lines


SHOWN_SECRETS_WARNING = (
    "WARNING: --show-demo-secrets: the banner below prints virtual key secrets. Use it only for a "
    "local demo: anything that keeps this output (a terminal log, a log collector) now holds them."
)


# -- serve -------------------------------------------------------------------------------


class GatewayServer(uvicorn.Server):
    """uvicorn, plus: tell long-lived streams to end as soon as stopping starts, never skip the
    lifespan shutdown (it flushes the audit log) on a second Ctrl+C, and reload the policy file on
    SIGHUP (which uvicorn does not handle: by default it would end the process at once)."""

    def __init__(
        self, config: uvicorn.Config, shutdown_signal: Any, banner: list[str], reloads: Any = None
    ) -> None:
        super().__init__(config)
        self._shutdown_signal = shutdown_signal
        self._banner = banner
        self._hangup = None
        if reloads is not None:
            from gateway_app.hangup import HangupReload

            self._hangup = HangupReload(reloads, lambda: self.should_exit)

    async def serve(self, sockets: list[Any] | None = None) -> None:
        async with self._hangup.handled() if self._hangup else contextlib.nullcontext():
            await super().serve(sockets)

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._banner:
            print("\n" + "\n".join(self._banner) + "\n", flush=True)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            logger.warning("already stopping: finishing calls in flight and flushing the audit log")
        self._captured_signals.append(sig)
        self.should_exit = True

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        self._shutdown_signal.trigger()
        await super().shutdown(sockets)


def cmd_serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    sys.setswitchinterval(SERVE_SWITCH_INTERVAL)
    if args.env_file:
        load_env_file(args.env_file)
    loaded = load_policy_or_exit(args.config)
    try:
        settings = Settings.from_loaded(
            loaded, host=args.host, port=args.port, database_url=args.database_url
        )
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    gateway = settings.policy.gateway
    raise_open_file_limit(gateway.max_connections)
    if args.workers > 1:
        from gateway_app.workers import run_workers, workers_refusal

        refusal = workers_refusal(settings.policy, args.workers, os.environ)
        if refusal is not None:
            print(f"mcp-gateway: refused: {refusal}", file=sys.stderr)
            return 2
        return run_workers(
            gateway.host,
            gateway.port,
            args.workers,
            lambda sock, index: _serve_one(args, settings, [sock], banner=index == 0),
        )
    _serve_one(args, settings)
    return 0


def _serve_one(
    args: argparse.Namespace, settings: Settings, sockets: list[Any] | None = None, *, banner: bool = True
) -> None:
    """One gateway process until it stops (on its own address, or on ``sockets``: a worker's)."""
    from gateway_app.app import create_app
    from gateway_app.reload import PolicySource

    overrides = {"host": args.host, "port": args.port, "database_url": args.database_url}
    source = PolicySource(Path(args.config), {k: v for k, v in overrides.items() if v is not None})
    app = create_app(settings, policy_source=source)
    gateway = settings.policy.gateway
    config = uvicorn_config(app, gateway, log_level=args.log_level.lower())
    lines = _banner(args, settings, gateway.host, gateway.port) if banner else []
    server = GatewayServer(config, app.state.shutdown, lines, app.state.reloads)
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        # uvicorn handled Ctrl-C (a graceful stop: calls finished, rows flushed) and raises it again so
        # the process ends by SIGINT, as the shell that sent it expects (a loop around `serve` stops
        # too). Let it, without printing a traceback for it.
        sys.excepthook = _quiet_interrupt
        raise


def _quiet_interrupt(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)


def _banner(args: argparse.Namespace, settings: Settings, host: str, port: int) -> list[str]:
    lines = connect_lines(
        settings.policy, host, port, config_path=args.config, show_secrets=args.show_demo_secrets
    )
    if not lines:
        return []
    if args.show_demo_secrets:
        logger.warning("%s", SHOWN_SECRETS_WARNING)
        return [SHOWN_SECRETS_WARNING, "Connect Claude Code with one of these keys:", *lines]
    heading = [
        "Connect Claude Code with one of these keys (secrets are not printed; "
        "`serve --show-demo-secrets` prints them for a local demo):"
    ]
    if args.env_file:
        heading.append(f"  in a shell with the key variables: set -a; . {args.env_file}; set +a")
    return [*heading, *lines]


# -- demo secrets ------------------------------------------------------------------------


def cmd_demo_secrets(args: argparse.Namespace) -> int:
    """Give every ``secret_env`` key of a config a random secret in an env file (kept across runs)."""
    loaded = load_policy_or_exit(args.config)
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
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on one port (more than 1 needs counters.backend: redis and "
        "gateway.session_secret_env)",
    )
    serve.add_argument(
        "--show-demo-secrets",
        action="store_true",
        help="print the keys' secrets in the start-up banner (local demo only; `make run` uses it)",
    )
    serve.set_defaults(func=cmd_serve)

    add_check_command(sub)

    from gateway_app.cli_keys import add_key_commands

    add_key_commands(sub)  # keys create|list|show|update|revoke|rotate, onboard

    from gateway_app.cli_reports import register

    audit = register(sub)  # audit, report
    add_audit_prune(audit)
    add_db_commands(sub)

    demo = sub.add_parser("demo-secrets", help="create random secrets for a config's secret_env keys")
    demo.add_argument("--config", required=True)
    demo.add_argument("--out", required=True)
    demo.set_defaults(func=cmd_demo_secrets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. SIGPIPE stays ignored for every command (Python's default): a write to a closed
    pipe or socket is an error handled where it happens, never a silent death of the server or of its
    stdio children's parent. An output command whose reader stops early (``| head``) ends quietly."""
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if args.func is cmd_serve:
        return int(args.func(args))
    try:
        code = int(args.func(args))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader is gone: send what is still buffered nowhere, so exiting does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    raise SystemExit(main())
