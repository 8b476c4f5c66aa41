"""A real gateway started from a policy file that tests edit and reload (as `serve` runs one)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from gateway_app.app import create_app
from gateway_app.reload import PolicySource, Reloader
from gateway_app.reload_log import ReloadRecord
from gateway_app.serving import uvicorn_config
from gateway_app.settings import Settings, load_policy_file
from llm_proxy.runtime import LlmRuntime
from mcp_gateway.runtime import GatewayRuntime
from tests.conftest import free_port


def with_process_settings(doc: dict[str, Any], tmp_path: Path, port: int) -> dict[str, Any]:
    """``doc`` with this test's port, database and fallback files (the same in every version)."""
    doc = copy.deepcopy(doc)
    gateway = doc.setdefault("gateway", {})
    gateway.update(port=port, database_url=f"sqlite:///{tmp_path / 'gateway.db'}")
    gateway.setdefault("audit", {})["fallback_file"] = str(tmp_path / "audit-fallback.jsonl")
    doc.setdefault("llm_proxy", {})["ledger_fallback_file"] = str(tmp_path / "ledger-fallback.jsonl")
    return doc


@dataclass
class FileGateway:
    path: Path
    base: str
    runtime: GatewayRuntime
    llm: LlmRuntime
    reloader: Reloader
    tmp_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def write(self, doc: dict[str, Any] | str) -> None:
        """Replace the policy file (a string is written as it is: a broken file, say)."""
        if isinstance(doc, str):
            text = doc
        else:
            text = yaml.safe_dump(with_process_settings(doc, self.tmp_path, self.port), sort_keys=False)
        staging = self.path.with_suffix(".tmp")
        staging.write_text(text, encoding="utf-8")
        staging.replace(self.path)

    async def reload(self, doc: dict[str, Any] | str | None = None) -> ReloadRecord:
        if doc is not None:
            self.write(doc)
        return await self.reloader.reload("api")


@contextlib.asynccontextmanager
async def serve_policy_file(
    doc: dict[str, Any],
    tmp_path: Path,
    *,
    wait_ready: bool = True,
    app_options: dict[str, Any] | None = None,
    adjust: Callable[[Settings], Settings] | None = None,
) -> AsyncIterator[FileGateway]:
    """Write ``doc`` to a file and run the real app on uvicorn from it, reloadable."""
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(with_process_settings(doc, tmp_path, port), sort_keys=False))
    settings = Settings.from_loaded(load_policy_file(path))
    if adjust is not None:
        settings = adjust(settings)
    app = create_app(settings, policy_source=PolicySource(path), **(app_options or {}))
    config = uvicorn_config(app, settings.policy.gateway, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("gateway did not start")
            await asyncio.sleep(0.01)
        runtime: GatewayRuntime = app.state.runtime
        if wait_ready:
            assert await runtime.hub.wait_ready(30), runtime.hub.status()
        yield FileGateway(
            path, f"http://127.0.0.1:{port}", runtime, app.state.llm, app.state.reloader, tmp_path, port
        )
    finally:
        app.state.shutdown.trigger()
        server.should_exit = True
        await task


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
