"""/healthz (the process answers) and /readyz (what each upstream and each row writer is doing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .batch_writer import BatchWriter
from .runtime import GatewayRuntime

if TYPE_CHECKING:
    from llm_proxy.runtime import LlmRuntime


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def writers(runtime: GatewayRuntime, llm: LlmRuntime | None) -> dict[str, BatchWriter]:
    """Every background row writer whose failure makes the gateway unready."""
    found: dict[str, BatchWriter] = {"audit": runtime.audit}
    if llm is not None:
        found["ledger"] = llm.ledger
        found["alerts"] = llm.alerts.writer
    return found


def readiness(runtime: GatewayRuntime, llm: LlmRuntime | None = None) -> tuple[int, dict[str, Any]]:
    upstreams = runtime.hub.status()
    enabled = [u for u in upstreams if u["state"] != "disabled"]
    ready = [u for u in enabled if u["state"] == "ready"]
    rows = writers(runtime, llm)
    stopped = next((name for name, writer in rows.items() if writer.stopped is not None), None)
    failing = next((name for name, writer in rows.items() if writer.last_error is not None), None)
    if runtime.shutdown.is_set:
        status, code = "stopping", 503
    elif stopped is not None:
        status, code = f"{stopped}_writer_stopped", 503
    elif failing is not None:
        status, code = f"{failing}_failing", 503
    elif enabled and not ready:
        status, code = "no_upstream_ready", 503
    elif len(ready) < len(enabled):
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    body = {
        "status": status,
        "upstreams": upstreams,
        "tools": len(runtime.hub.bindings),
        "catalogue_problems": runtime.hub.catalogue_problems(),
        "sessions": len(runtime.sessions),
        **{name: writer.health() for name, writer in rows.items()},
    }
    return code, body


async def readyz(request: Request) -> JSONResponse:
    code, body = readiness(request.state.runtime, getattr(request.state, "llm", None))
    return JSONResponse(body, status_code=code)
