"""The HTTP client the gateway uses towards upstream MCP servers and model providers.

`open_client` picks the implementation for an origin; callers see only the
`HttpClient` / `HttpResponse` interface of `base`.
"""

from gateway_common.http.base import (
    ConnectError,
    ConnectionLost,
    HttpClient,
    HttpClientError,
    HttpResponse,
    MalformedResponse,
    ReadTimeout,
)
from gateway_common.http.factory import ClientOptions, open_client, request_target

__all__ = [
    "ClientOptions",
    "ConnectError",
    "ConnectionLost",
    "HttpClient",
    "HttpClientError",
    "HttpResponse",
    "MalformedResponse",
    "ReadTimeout",
    "open_client",
    "request_target",
]
