"""How the gateway's HTTP client reaches one upstream (an MCP server over HTTP, a model provider):
which client carries it, HTTP/2, and TLS files. Shared by ``mcp.servers[]`` and ``providers[]``.

The TLS files are opened and parsed when the file is loaded, so ``mcp-gateway check`` refuses a
missing, unreadable or mismatched certificate exactly as ``serve`` would.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP field name (RFC 9110 token)."""
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters other than HTAB: CR and LF end a header line, NUL ends it for some servers."""
CLIENT_SET_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
"""Headers the HTTP client writes itself (from the URL and the body); a second copy would be ambiguous."""

HTTP_CLIENT_DESCRIPTION = (
    "Which HTTP client carries this upstream: auto (the fast HTTP/1.1 client, or the httpx-based one "
    "when a proxy from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY applies, or http2 or tls is set), fast (always "
    "the fast client; environment proxies are not used) or httpx."
)


def header_problem(name: str, value: str) -> str | None:
    """Why the request header ``name: value`` must not be sent (it could inject headers), or None."""
    if not HEADER_NAME.fullmatch(name):
        return f"the header name {name[:80]!r} is not a valid HTTP field name"
    if name.lower() in CLIENT_SET_HEADERS:
        return f"the header {name!r} is set by the HTTP client itself"
    bad = _CONTROL.search(value)
    if bad is not None:
        return (
            f"the value of header {name!r} contains {bad.group()!r} "
            "(CR, LF and other control characters could inject headers)"
        )
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return f"the value of header {name!r} has characters outside Latin-1"
    return None


def check_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` if every one may be sent; else `ValueError` naming the first that may not."""
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            raise ValueError(problem)
    return headers


def _readable_file(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{field} {value!r}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{field} {value!r}: cannot be read ({exc.strerror})") from None
    return value


def _refuse_password() -> str:
    raise ValueError("the private key is encrypted; give it unencrypted")


class TlsFiles(BaseModel):
    """PEM files for TLS towards one upstream (paths relative to the working directory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_bundle: str | None = Field(
        default=None,
        description=(
            "CA certificates (PEM) to verify the server with, instead of the system trust store "
            "(e.g. a company CA)."
        ),
    )
    client_cert: str | None = Field(
        default=None,
        description=(
            "Client certificate chain (PEM) for servers that require one (mutual TLS); may hold the key."
        ),
    )
    client_key: str | None = Field(
        default=None,
        description="The client certificate's private key (PEM, unencrypted), if not in client_cert.",
    )

    @field_validator("ca_bundle", "client_cert", "client_key")
    @classmethod
    def _exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _readable_file(value, info.field_name or "file")

    @model_validator(mode="after")
    def _loads(self) -> TlsFiles:
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        context = ssl.create_default_context()
        if self.ca_bundle:
            try:
                context.load_verify_locations(cafile=self.ca_bundle)
            except ssl.SSLError as exc:
                raise ValueError(
                    f"ca_bundle {self.ca_bundle!r} holds no usable PEM certificate ({exc})"
                ) from None
        if self.client_cert:
            try:
                context.load_cert_chain(self.client_cert, self.client_key, password=_refuse_password)
            except ssl.SSLError as exc:
                raise ValueError(
                    f"client_cert {self.client_cert!r}"
                    + (f" with client_key {self.client_key!r}" if self.client_key else "")
                    + f" cannot be loaded (not PEM, no key, or a key that does not match: {exc})"
                ) from None
        return self


HttpClientKind = Literal["auto", "fast", "httpx"]
HTTP2_DESCRIPTION = (
    "Offer HTTP/2 (negotiated with TLS; HTTP/1.1 when the server declines). Needs an https:// URL "
    "and the httpx client."
)
TLS_DESCRIPTION = "A CA bundle and/or a client certificate for an https:// upstream."


def check_client_fields(url: str, http_client: HttpClientKind, http2: bool, tls: TlsFiles | None) -> None:
    """Refuse a combination no client can carry (`ValueError`)."""
    https = urlsplit(url).scheme == "https"
    if http2 and http_client == "fast":
        raise ValueError("http2 needs the httpx client; remove http_client: fast or http2")
    if http2 and not https:
        raise ValueError("http2 is negotiated during TLS: it needs an https:// URL")
    if tls is not None and not https:
        raise ValueError("tls applies to https:// URLs only")
