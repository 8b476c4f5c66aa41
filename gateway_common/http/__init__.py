"""The HTTP client the gateway uses towards upstream MCP servers and model providers.

`open_client` picks the implementation for an origin (the fast pool, or httpx for proxies and
HTTP/2); callers see only the `HttpClient` / `HttpResponse` interface of `base`.
"""

from gateway_common.http.base import (
    ConnectError,
    ConnectionLost,
    HttpClient,
    HttpClientError,
    HttpResponse,
    InvalidRequest,
    MalformedResponse,
    ReadTimeout,
    ResponseHeaders,
)
from gateway_common.http.factory import (
    ClientOptions,
    TransportChoice,
    choose_transport,
    open_client,
    request_target,
)

__all__ = [
    "ClientOptions",
    "ConnectError",
    "ConnectionLost",
    "HttpClient",
    "HttpClientError",
    "HttpResponse",
    "InvalidRequest",
    "MalformedResponse",
    "ReadTimeout",
    "ResponseHeaders",
    "TransportChoice",
    "choose_transport",
    "open_client",
    "request_target",
]
