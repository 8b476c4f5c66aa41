"""Example upstream: simulated staging deployments whose state lives in a small JSON file.

Nothing is really deployed; the point is a tool with side effects a demo can watch: each
deploy or rollback rewrites the state file (current version, rollback stack, event log
with who and when), and deploy_staging streams MCP progress notifications as it goes.
The file is re-read on every call and replaced atomically (temp file + rename), so a
reader never sees half a write and ``cat`` shows the truth between calls. Writers are
serialised within one process only; run one instance per state file.

Run alone: ``python -m examples.servers.deployment [--state PATH] [--transport http --port N]``.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from examples.servers import _cli
from examples.servers._atomic import atomic_write

DEFAULT_STATE = Path("data/deployments.json")
MAX_EVENTS = 50
"""Per-service event log cap, so the state file stays small however long the demo runs."""
DEPLOY_STEPS = ("validated release", "pulled image", "rolled out to staging", "health checks passed")

ServiceName = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Service name, e.g. checkout-api")
]
Version = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$", description="Version to deploy, e.g. 1.4.2")
]


class Release(BaseModel):
    version: str
    deployed_at: str
    """ISO 8601 UTC timestamp."""
    deployed_by: str


class Event(BaseModel):
    action: Literal["deploy", "rollback"]
    from_version: str | None
    to_version: str
    at: str
    by: str


class ServiceState(BaseModel):
    service: str
    environment: Literal["staging"] = "staging"
    current: Release | None = None
    previous: list[Release] = Field(default_factory=list)
    """Rollback stack, oldest first: rollback returns to the last entry."""
    events: list[Event] = Field(default_factory=list)
    """What happened, oldest first, capped at the most recent entries."""


class State(BaseModel):
    services: dict[str, ServiceState] = Field(default_factory=dict)


class Status(BaseModel):
    services: list[ServiceState]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_actor() -> str:
    """Who the state file records as deploying: $DEPLOY_ACTOR, else the OS user."""
    try:
        return os.environ.get("DEPLOY_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        return "unknown"


class StateFile:
    """Load and atomically replace the JSON state; one lock serialises this process's writers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = anyio.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> State:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return State()
        try:
            return State.model_validate_json(raw)
        except ValidationError as exc:
            raise ToolError(
                f"state file {self.path} is corrupt ({exc.error_count()} errors); fix or delete it"
            ) from None

    def save(self, state: State) -> None:
        atomic_write(self.path, (state.model_dump_json(indent=2) + "\n").encode("utf-8"))


def _record(entry: ServiceState, event: Event) -> None:
    entry.events = [*entry.events, event][-MAX_EVENTS:]


def _known(state: State, service: str) -> ServiceState:
    if service not in state.services:
        known = ", ".join(sorted(state.services)) or "none yet"
        raise ToolError(f"unknown service {service!r}; deployed services: {known}")
    return state.services[service]


def build_server(
    state_path: Path | str = DEFAULT_STATE, *, step_delay: float = 0.2, actor: str | None = None
) -> MCPServer:
    """Build the server over ``state_path``; ``step_delay`` paces each simulated deploy step."""
    if step_delay < 0:
        raise ValueError("step_delay must be >= 0")
    store = StateFile(Path(state_path))
    who = actor or default_actor()
    mcp = MCPServer(
        "example-deployment",
        version="0.1.0",
        instructions=(
            "Simulated staging deployments. status shows what runs where; deploy_staging ships a "
            "version and reports progress; rollback returns a service to its previous version."
        ),
    )

    @mcp.tool(
        title="Deploy to staging",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False),
    )
    async def deploy_staging(service: ServiceName, version: Version, ctx: Context) -> ServiceState:
        """Deploy `version` of `service` to staging, reporting progress through each step.

        The running version is pushed onto the rollback stack. Deploying the version that is
        already running is refused. Returns the service's new state.
        """
        async with store.lock:
            state = store.load()
            entry = state.services.get(service) or ServiceState(service=service)
            if entry.current is not None and entry.current.version == version:
                raise ToolError(f"service {service!r} is already at {version} on staging")
            total = len(DEPLOY_STEPS)
            for done, step in enumerate(DEPLOY_STEPS[:-1], start=1):
                await anyio.sleep(step_delay)
                await ctx.report_progress(done, total, f"{service} {version}: {step}")
            now = _now()
            previous = entry.current
            if previous is not None:
                entry.previous.append(previous)
            entry.current = Release(version=version, deployed_at=now, deployed_by=who)
            _record(
                entry,
                Event(
                    action="deploy",
                    from_version=previous.version if previous else None,
                    to_version=version,
                    at=now,
                    by=who,
                ),
            )
            state.services[service] = entry
            await anyio.to_thread.run_sync(store.save, state)
            await ctx.report_progress(total, total, f"{service} {version}: {DEPLOY_STEPS[-1]}")
            return entry

    @mcp.tool(
        title="Roll back",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False),
    )
    async def rollback(service: ServiceName) -> ServiceState:
        """Return `service` on staging to the version it ran before the current one.

        Fails if the service was never deployed or has no previous version. Returns the new state.
        """
        async with store.lock:
            state = store.load()
            entry = _known(state, service)
            if entry.current is None or not entry.previous:
                running = entry.current.version if entry.current else "nothing"
                raise ToolError(
                    f"service {service!r} has no previous version to roll back to (running {running})"
                )
            target = entry.previous.pop()
            now = _now()
            _record(
                entry,
                Event(
                    action="rollback",
                    from_version=entry.current.version,
                    to_version=target.version,
                    at=now,
                    by=who,
                ),
            )
            entry.current = Release(version=target.version, deployed_at=now, deployed_by=who)
            await anyio.to_thread.run_sync(store.save, state)
            return entry

    @mcp.tool(
        title="Deployment status",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    def status(
        service: Annotated[str | None, Field(description="One service, or omit for all services")] = None,
    ) -> Status:
        """Show what runs on staging: current version, who deployed it and when, rollback stack, event log."""
        state = store.load()
        if service is not None:
            return Status(services=[_known(state, service)])
        return Status(services=[state.services[name] for name in sorted(state.services)])

    return mcp


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.base_parser(
        "examples.servers.deployment", "Serve simulated staging deployments over MCP.", default_port=8103
    )
    parser.add_argument(
        "--state", type=Path, default=DEFAULT_STATE, help=f"JSON state file (default: {DEFAULT_STATE})"
    )
    parser.add_argument(
        "--step-delay", type=float, default=0.2, help="seconds per simulated deploy step (default: 0.2)"
    )
    parser.add_argument(
        "--actor", default=None, help="name recorded as deployer (default: $DEPLOY_ACTOR or user)"
    )

    def build(args: argparse.Namespace) -> MCPServer:
        return build_server(args.state, step_delay=args.step_delay, actor=args.actor)

    _cli.main(parser, build, argv)


if __name__ == "__main__":
    main()
