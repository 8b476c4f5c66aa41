"""Relaying a provider's answer to the client: whole, or streamed chunk by chunk as it arrives.

A stream is never buffered: each chunk read from the provider is written to the
client before the next read, and a `StreamMeter` reads usage from it on the way.
Whether the client is still there is only watched once a stream has run for
`WATCH_AFTER` seconds (a short stream does not pay for a watcher task); when the
client goes away, the provider connection is closed. However a stream ends
(finished, client gone, provider broken off or silent past its timeout, gateway
stopping), the usage charged is the provider's final usage or, when that never
came, the meter's estimate from what was relayed (``usage_estimated`` in the
ledger; see `llm_proxy.usage`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.types import Receive, Send

from gateway_common.http import HttpResponse as Response
from gateway_common.http import ReadTimeout
from llm_proxy.errors import UpstreamFailed, stream_error_event
from llm_proxy.forward import UPSTREAM_ERRORS, Opened, error_detail, error_type
from llm_proxy.upstream import describe_failure
from llm_proxy.usage import StreamMeter, usage_from_body
from policies.bounds import MAX_ID_CHARS, clip
from policies.outcomes import Outcome

if TYPE_CHECKING:
    from llm_proxy.exchange import Exchange

WATCH_AFTER = 0.05


def response_headers(ex: Exchange, response: Response, content_type: str) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"gateway-request-id", ex.request_id.encode()),
    ]
    upstream_id = response.headers.get("request-id") or response.headers.get("x-request-id")
    if upstream_id:
        ex.upstream_request_id = clip(upstream_id, MAX_ID_CHARS)
        headers.append((b"request-id", upstream_id.encode("latin-1")))
    return headers


async def relay_whole(ex: Exchange, opened: Opened, send: Send) -> None:
    response, body = opened.response, opened.first
    ex.http_status = status = response.status
    if status < 300:
        ex.usage, model = usage_from_body(body, ex.dialect.openai)
        ex.usage_estimated = False
        ex.served_model = model or ex.served_model
    else:
        body = ex.rt.redact(body)
        ex.status, ex.error_type, ex.error = Outcome.PROVIDER_ERROR, error_type(body), error_detail(body)
    headers = response_headers(ex, response, response.headers.get("content-type", "application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    if status == 429 and "retry-after" in response.headers:
        headers.append((b"retry-after", response.headers["retry-after"].encode("latin-1")))
    ex.response_started = True
    await send({"type": "http.response.start", "status": status, "headers": headers})
    ex.ttfb = time.perf_counter()
    await send({"type": "http.response.body", "body": body})


async def relay_stream(ex: Exchange, opened: Opened, receive: Receive, send: Send) -> None:
    response = opened.response
    meter = StreamMeter(ex.dialect.openai)
    headers = response_headers(ex, response, response.headers.get("content-type", "text/event-stream"))
    headers.append((b"cache-control", b"no-cache"))
    ex.response_started = ex.relaying = True
    loop = asyncio.get_running_loop()
    watcher: list[asyncio.Task[None]] = []
    timer = loop.call_later(
        WATCH_AFTER, lambda: watcher.append(loop.create_task(_watch_disconnect(ex, receive, response)))
    )
    chunk = opened.first
    complete = False
    finished = False
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while chunk:
            meter.feed(chunk)
            # When the provider's end has already arrived, the last chunk and the end go out in one write.
            finished = response.at_eof() and meter.error_type is None
            await send({"type": "http.response.body", "body": chunk, "more_body": not finished})
            if ex.ttfb is None:
                ex.ttfb = time.perf_counter()
            if finished:
                break
            chunk = await response.read_some()
        complete = True
    except UPSTREAM_ERRORS as exc:
        if not ex.client_gone:
            silent = isinstance(exc, ReadTimeout | TimeoutError)
            failure = UpstreamFailed(
                f"provider {ex.provider!r} broke off the stream: {describe_failure(exc)}",
                outcome=Outcome.TIMEOUT if silent else Outcome.UPSTREAM_ERROR,
            )
            ex.record_error(failure)
            event = stream_error_event(failure, ex.dialect.flavor)
            await send({"type": "http.response.body", "body": event, "more_body": True})
    finally:
        ex.relaying = False
        timer.cancel()
        for task in watcher:
            task.cancel()
        if complete:
            response.release()
        else:
            response.close()
        parsed = ex.parsed
        assert parsed is not None
        ex.usage, ex.usage_estimated = meter.settle(len(parsed.body), parsed.max_tokens)
        ex.served_model = meter.model or ex.served_model
    if ex.client_gone:
        ex.status, ex.error = Outcome.CANCELLED, "the client closed the stream"
        return
    if meter.error_type is not None and ex.status == Outcome.OK:
        ex.status, ex.error_type = Outcome.UPSTREAM_ERROR, meter.error_type
        ex.error = "error event in the stream"
    if not finished:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(ex: Exchange, receive: Receive, response: Response) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if ex.relaying:
                ex.client_gone = True
                response.close()
            return
