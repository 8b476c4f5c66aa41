"""/healthz (the process answers) and /readyz (what each upstream is doing)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .runtime import GatewayRuntime


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readiness(runtime: GatewayRuntime) -> tuple[int, dict[str, Any]]:
    upstreams = runtime.hub.status()
    enabled = [u for u in upstreams if u["state"] != "disabled"]
    ready = [u for u in enabled if u["state"] == "ready"]
    audit = runtime.audit
    audit_ok = audit.last_error is None
    if runtime.shutdown.is_set:
        status, code = "stopping", 503
    elif not audit_ok:
        status, code = "audit_failing", 503
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
        "audit": {
            "written": audit.written,
            "pending": audit.pending,
            "diverted_to_fallback": audit.diverted,
            "last_error": audit.last_error,
        },
    }
    return code, body


async def readyz(request: Request) -> JSONResponse:
    code, body = readiness(request.state.runtime)
    return JSONResponse(body, status_code=code)
