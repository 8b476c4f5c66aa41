"""Running one JSON-RPC request and writing its answer, in either era.

The method's handler runs on the request's own task. A client's cancellation ends
it quietly: in 2025-11-25 by ``notifications/cancelled`` (the session holds the task),
in 2026-07-28 by closing the POST, which is watched only for a call still running
after `WATCH_AFTER` seconds (fast calls never pay for a watcher task).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS
from starlette.types import Receive

from mcp_gateway import jsonrpc
from mcp_gateway.errors import GatewayError, jsonrpc_error
from mcp_gateway.server.context import RequestContext
from mcp_gateway.server.methods import dispatch
from mcp_gateway.server.wire import Responder

logger = logging.getLogger("mcp_gateway.mcp")

JsonObject = dict[str, Any]
REQUEST_CANCELLED = -32800
WATCH_AFTER = 0.02
"""Seconds after which a 2026 tools/call starts watching for the client closing the POST."""


def rejection_status(code: int) -> int:
    """The HTTP status a 2026-07-28 client expects with a JSON-RPC error (200 where none is set)."""
    return ERROR_CODE_HTTP_STATUS.get(code, 200)


async def run_request(
    ctx: RequestContext,
    method: str,
    params: JsonObject,
    responder: Responder,
    receive: Receive,
    *,
    cancel_on_disconnect: bool,
) -> None:
    """Dispatch one request and write its answer; cancellation by the client ends it quietly."""
    task = asyncio.current_task()
    assert task is not None
    gone = False
    watcher: asyncio.Future[Any] | None = None
    arming: asyncio.TimerHandle | None = None
    if cancel_on_disconnect:

        def on_receive(fut: asyncio.Future[Any]) -> None:
            nonlocal gone
            if not fut.cancelled() and fut.exception() is None and fut.result()["type"] == "http.disconnect":
                gone = True
                task.cancel()

        def arm() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(receive())
            watcher.add_done_callback(on_receive)

        arming = asyncio.get_running_loop().call_later(WATCH_AFTER, arm)
    request_id = ctx.request_id
    try:
        result = await dispatch(ctx, method, params)
    except asyncio.CancelledError:
        session = ctx.session
        by_client = session is not None and request_id in session.cancelled_ids
        if (gone or by_client) and task.uncancel() == 0:
            if by_client and session is not None:
                session.cancelled_ids.discard(request_id)
                error = {"code": REQUEST_CANCELLED, "message": "Request cancelled"}
                await responder.finish(jsonrpc.error_response(request_id, error))
            return
        raise
    except GatewayError as exc:
        status = rejection_status(exc.code) if ctx.modern else 200
        await responder.finish(jsonrpc.error_response(request_id, jsonrpc_error(exc)), status)
        return
    except Exception:
        logger.exception("unexpected failure serving %s", method)
        await responder.finish(jsonrpc.error_response(request_id, jsonrpc_error(RuntimeError())))
        return
    finally:
        if arming is not None:
            arming.cancel()
        if watcher is not None and not watcher.done():
            watcher.cancel()
    await responder.finish(jsonrpc.response(request_id, result))
