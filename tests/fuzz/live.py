"""The real gateway (with a stdio MCP upstream) and the mock model API, served on loopback from a
background thread with its own event loop.

The fuzz tests are plain synchronous Hypothesis tests: each example sends real bytes over a
real socket to this server and waits for the answer, so a crash, a hang or a dropped
connection is seen exactly as a client would see it. The thread also lets a test look at
the live objects (`call` runs a coroutine on the server's loop) and counts every audit and
ledger row the gateway hands to its writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
import yaml

from examples.servers.mock_model_api import MockModelApi, MockOptions
from gateway_app.app import create_app
from gateway_app.serving import uvicorn_config
from gateway_app.settings import Settings
from llm_proxy.runtime import LlmRuntime
from mcp_gateway.runtime import GatewayRuntime
from policies.secrets import hash_secret
from tests.conftest import free_port, upstream_stdio

T = TypeVar("T")

ALICE = "mgw_fuzz_alice_5f1c0e9a7b3d4c2e"
"""May call alpha's echo, add and fail; any routed model."""
BOB = "mgw_fuzz_bob_8a2d6f4b1c9e7a3f"
"""No tools at all; only claude-haiku-* and gpt-4o-mini."""
PROVIDER_KEY = "sk-fuzz-provider-SECRET-3c7e1a9f5b"
SECRETS = (ALICE, BOB, PROVIDER_KEY)
MAX_BODY = 2_000_000
"""Both body limits (/mcp and the model API): a 1 MB name fits, a few MB do not."""
TOOLS = ("alpha__echo", "alpha__add", "alpha__fail")


def gateway_config(mock_url: str) -> dict[str, Any]:
    return {
        "gateway": {"max_body_bytes": MAX_BODY, "allowed_origins": ["https://app.example.com"]},
        "teams": [{"name": "eng"}],
        "virtual_keys": [
            {
                "id": "alice",
                "team": "eng",
                "secret_sha256": hash_secret(ALICE),
                "rate_limit": {"concurrent_requests": 8},
            },
            {
                "id": "bob",
                "team": "eng",
                "secret_sha256": hash_secret(BOB),
                "allowed_models": ["claude-haiku-*", "gpt-4o-mini"],
            },
        ],
        "mcp": {
            # Only tools that answer at once: the fuzzer must not crash, hang or grow the upstream.
            "servers": [upstream_stdio("alpha", allowed_tools=["echo", "add", "fail"])],
            "virtual_key_permissions": {"alice": "*"},
            "call_timeout_seconds": 20,
        },
        "providers": [
            {"name": "mock", "kind": "anthropic", "base_url": mock_url, "api_key_env": "FUZZ_PROVIDER_KEY"},
            {
                "name": "mock-openai",
                "kind": "openai-compatible",
                "base_url": f"{mock_url}/v1",
                "api_key_env": "FUZZ_PROVIDER_KEY",
            },
        ],
        "routes": [{"match": "claude-*", "provider": "mock"}, {"match": "gpt-*", "provider": "mock-openai"}],
        "llm_proxy": {"max_body_bytes": MAX_BODY},
        "budgets": {"org_level": {"monthly_limit_usd": 100000}},
    }


def _settings(config: dict[str, Any], tmp: Path, port: int) -> Settings:
    text = yaml.safe_dump(config, sort_keys=False)
    settings = Settings.from_text(
        textwrap.dedent(text), database_url=f"sqlite:///{tmp / 'gateway.db'}", port=port
    )
    policy = settings.policy
    audit = policy.gateway.audit.model_copy(update={"fallback_file": str(tmp / "audit-fallback.jsonl")})
    llm = policy.llm_proxy.model_copy(update={"ledger_fallback_file": str(tmp / "ledger-fallback.jsonl")})
    gateway = policy.gateway.model_copy(update={"audit": audit})
    return Settings(
        policy.model_copy(update={"gateway": gateway, "llm_proxy": llm}), settings.source, settings.warnings
    )


class RowCounter:
    """Wraps a writer's ``submit`` (which still runs) to keep every row handed to it, without its
    large JSON values (arguments, results: a long fuzz run must not hold them all)."""

    def __init__(self, writer: Any) -> None:
        self.rows: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        submit = writer.submit

        def counting(row: dict[str, Any]) -> None:
            submit(row)
            kept = {k: v for k, v in row.items() if k not in ("arguments", "result")}
            with self._changed:
                self.rows.append(kept)
                self._changed.notify_all()

        writer.submit = counting

    def __len__(self) -> int:
        return len(self.rows)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The rows once at least ``count`` were submitted (a ledger row comes after its answer)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.rows) >= count, timeout)
            return list(self.rows)


class ErrorLog(logging.Handler):
    """Every record at ERROR or above from any logger (the gateway, uvicorn, the mock)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def since(self, mark: int) -> list[str]:
        lines = []
        for record in self.records[mark:]:
            text = f"{record.name} {record.levelname}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            lines.append(text)
        return lines


class LiveGateway:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.mock_port = free_port()
        self.host = "127.0.0.1"
        self.errors = ErrorLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fuzz-gateway", daemon=True)
        self.runtime: GatewayRuntime
        self.llm: LlmRuntime
        self.audit_rows: RowCounter
        self.ledger_rows: RowCounter
        self.mock = MockModelApi(MockOptions(api_key=PROVIDER_KEY))
        self.ledger_expected = 0
        """Model requests answered past the key check so far: each must have exactly one ledger row."""
        self.ledger_uncertain = 0
        """Model requests that may or may not have reached the gateway (see `checks.check_ledger`)."""

    # -- lifetime --------------------------------------------------------------------------------

    def start(self) -> None:
        logging.getLogger().addHandler(self.errors)
        self._thread.start()
        self._ready.wait(60)
        if self._failure is not None:
            raise RuntimeError("the gateway did not start") from self._failure
        if not self._ready.is_set():
            raise RuntimeError("the gateway did not start within 60 s")

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(60)
        logging.getLogger().removeHandler(self.errors)
        if self._failure is not None:
            raise RuntimeError("the gateway thread failed") from self._failure

    def _main(self) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()  # as `mcp-gateway serve` runs
        except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we test on
            loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        mock = uvicorn.Server(
            uvicorn.Config(
                self.mock, host=self.host, port=self.mock_port, log_level="warning", lifespan="off"
            )
        )
        settings = _settings(gateway_config(f"http://{self.host}:{self.mock_port}"), self.tmp, self.port)
        app = create_app(settings)
        # The very uvicorn configuration `mcp-gateway serve` uses (timeouts, caps, protocol).
        server = uvicorn.Server(uvicorn_config(app, settings.policy.gateway, log_level="warning"))
        tasks = [asyncio.create_task(mock.serve()), asyncio.create_task(server.serve())]
        try:
            while not (mock.started and server.started):
                for task in tasks:
                    if task.done():
                        task.result()
                        raise RuntimeError("a server stopped while starting")
                await asyncio.sleep(0.01)
            self.runtime = app.state.runtime
            self.llm = app.state.llm
            if not await self.runtime.hub.wait_ready(30):
                raise RuntimeError(f"the upstream did not start: {self.runtime.hub.status()}")
            self.audit_rows = RowCounter(self.runtime.audit)
            self.ledger_rows = RowCounter(self.llm.ledger)
            self._ready.set()
            await self._stop.wait()
        finally:
            app.state.shutdown.trigger()
            server.should_exit = mock.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- looking inside --------------------------------------------------------------------------

    def call(self, make: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run a coroutine on the server's event loop and return its result."""
        assert self._loop is not None

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def flush(self) -> None:
        """Write every queued audit and ledger row now."""

        async def both() -> None:
            await self.runtime.audit.flush()
            await self.llm.ledger.flush()

        self.call(both)


@contextlib.contextmanager
def live_gateway(tmp: Path) -> Iterator[LiveGateway]:
    old = os.environ.get("FUZZ_PROVIDER_KEY")
    os.environ["FUZZ_PROVIDER_KEY"] = PROVIDER_KEY
    gateway = LiveGateway(tmp)
    try:
        gateway.start()
        yield gateway
    finally:
        try:
            gateway.stop()
        finally:
            if old is None:
                os.environ.pop("FUZZ_PROVIDER_KEY", None)
            else:
                os.environ["FUZZ_PROVIDER_KEY"] = old
